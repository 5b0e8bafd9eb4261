"""What the gateway serves from its web root: the page and its assets, nothing else."""

from __future__ import annotations

from gateway.http import StaticFiles
from gateway.server import WEB_ROOT


def make_tree(root, files):
    for relative in files:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"contents of {relative}")


def test_build_and_test_files_are_not_served(tmp_path):
    make_tree(tmp_path, [
        "index.html", "terminal.js", "style.css", "vendor/xterm.js",
        "line-editor.test.js", "package.json", "package-lock.json",
        "node_modules/@xterm/xterm/lib/xterm.js", "node_modules/.installed",
        ".hidden", ".cache/thing.js",
    ])
    static = StaticFiles(tmp_path)
    served = {path for path in ("/", "/static/index.html", "/static/terminal.js",
                                "/static/style.css", "/static/vendor/xterm.js")
              if static.get(path) is not None}
    assert served == {"/", "/static/index.html", "/static/terminal.js", "/static/style.css",
                      "/static/vendor/xterm.js"}
    for path in ("/static/line-editor.test.js", "/static/package.json",
                 "/static/package-lock.json", "/static/node_modules/@xterm/xterm/lib/xterm.js",
                 "/static/node_modules/.installed", "/static/.hidden",
                 "/static/.cache/thing.js"):
        assert static.get(path) is None, path
    assert static.get("/") == static.get("/static/index.html")
    assert static.get("/static/terminal.js")[1] == "text/javascript; charset=utf-8"


def test_the_real_page_and_its_modules_are_served():
    static = StaticFiles(WEB_ROOT)
    for path in ("/", "/static/terminal.js", "/static/line-editor.js", "/static/style.css"):
        assert static.get(path) is not None, path
    assert static.get("/static/line-editor.test.js") is None
    assert static.get("/static/package.json") is None

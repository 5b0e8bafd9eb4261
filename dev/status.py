"""A status page for the local system: what people would rather look at than read.

``/`` shows the queue (waiting, in flight, dead letters), the workers the scaler keeps
and each project's files as they are in the emulated S3, refreshed every two seconds;
``/status.json`` is the same as data. It serves from a thread of this process and reads
the emulators directly: it is a development aid, not part of the product.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dev.system import LocalSystem

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CloudIDE local status</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
 .figures { display: flex; gap: 1em; }
 .figure { border: 1px solid #ccc; border-radius: 6px; padding: .6em 1em; min-width: 7em; }
 .figure b { display: block; font-size: 2em; }
 table { border-collapse: collapse; margin: .5em 0 1.5em; }
 td, th { padding: .2em .8em; border-bottom: 1px solid #eee; text-align: left; }
 td.n { text-align: right; font-variant-numeric: tabular-nums; }
</style></head>
<body>
<h1>CloudIDE, running locally</h1>
<div class="figures" id="figures"></div>
<div id="projects"></div>
<script>
function figure(label, value) {
  const box = document.createElement("div");
  box.className = "figure";
  const number = document.createElement("b");
  number.textContent = value === null ? "-" : value;
  box.append(number, label);
  return box;
}
function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = "n";
}
async function refresh() {
  const status = await (await fetch("status.json")).json();
  document.getElementById("figures").replaceChildren(
    figure("waiting", status.queue.waiting),
    figure("in flight", status.queue.inFlight),
    figure("dead letters", status.queue.deadLetters),
    figure("live workers", status.workers.live),
    figure("workers launched", status.workers.launched),
  );
  const projects = document.getElementById("projects");
  projects.replaceChildren();
  for (const [project, files] of Object.entries(status.projects)) {
    const heading = document.createElement("h2");
    const link = document.createElement("a");
    link.href = status.terminalPages[project];
    link.textContent = project;
    heading.append("project ", link);
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const name of ["file", "bytes", "modified"]) {
      const th = document.createElement("th");
      th.textContent = name;
      head.append(th);
    }
    for (const file of files) {
      const row = table.insertRow();
      cell(row, file.path);
      cell(row, file.bytes, true);
      cell(row, file.modified);
    }
    projects.append(heading, table);
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body></html>
"""


class StatusServer:
    def __init__(self, system: LocalSystem, port: int = 0):
        self._system = system
        self._s3 = system.client("s3")
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/"

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> dict:
        waiting, in_flight = self._system.queue_counts()
        dead_letters = sum(self._system.queue_counts(self._system.dead_letter_url))
        try:
            figures = self._system.scaler_figures()
        except OSError:
            figures = {}  # the scaler is starting or gone; the page shows "-"
        projects: dict[str, list[dict]] = {}
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._system.bucket, Prefix="projects/"):
            for item in page.get("Contents", []):
                project, _, path = item["Key"][len("projects/"):].partition("/")
                projects.setdefault(project, []).append({
                    "path": path, "bytes": item["Size"],
                    "modified": item["LastModified"].isoformat(timespec="seconds"),
                })
        return {
            "queue": {"waiting": waiting, "inFlight": in_flight, "deadLetters": dead_letters},
            "workers": {"live": _whole(figures.get("live_tasks")),
                        "launched": _whole(figures.get("tasks_launched_total"))},
            "projects": projects,
            "terminalPages": {project: self._system.terminal_page(project, "term-1")
                              for project in projects},
        }

    def _handler(self):
        status = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/":
                    self._send(200, PAGE.encode(), "text/html; charset=utf-8")
                elif self.path == "/status.json":
                    self._send(200, json.dumps(status.snapshot()).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                """Quiet: the terminal belongs to the person typing commands."""

        return Handler


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)

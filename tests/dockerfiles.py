"""Reading docker/*.Dockerfile and .dockerignore, for tests that check images without Docker."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON array of an ENTRYPOINT, CMD or HEALTHCHECK CMD (exec form only)."""
        args = self.last(keyword)
        if keyword == "HEALTHCHECK":
            args = re.sub(r"^(--[a-z-]+=\S+\s+)*CMD\s+", "", args)
        return json.loads(args)


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each with its instructions (continuations joined)."""
    lines, pending = [], ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            stages.append(Stage(base=words[0], name=words[2] if len(words) == 3 else None))
        else:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def copy_sources(stage: Stage, into: str = "") -> list[str]:
    """What a stage COPYs from the build context (not ``--from`` another stage), to
    destinations under ``into`` when given."""
    sources = []
    for args in stage.all("COPY"):
        words = args.split()
        if any(word.startswith("--from=") for word in words) or not words[-1].startswith(into):
            continue
        sources.extend(word for word in words[:-1] if not word.startswith("--"))
    return sources


def app_sources(dockerfile: Path) -> list[str]:
    """What ends up in the image's /app: the final stage's copies (its WORKDIR is /app),
    and what an earlier stage copies to /app for the final one to take whole."""
    *earlier, final = parse(dockerfile)
    return copy_sources(final) + [source for stage in earlier
                                  for source in copy_sources(stage, into="/app/")]


def _pattern(glob: str) -> re.Pattern:
    """A .dockerignore pattern as Go's filepath.Match reads it, with ``**`` for any depth."""
    out = ""
    index = 0
    while index < len(glob):
        if glob.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
        elif glob.startswith("**", index):
            out += ".*"
            index += 2
        elif glob[index] == "*":
            out += "[^/]*"
            index += 1
        elif glob[index] == "?":
            out += "[^/]"
            index += 1
        else:
            out += re.escape(glob[index])
            index += 1
    return re.compile(out + r"\Z")


class DockerIgnore:
    """Which paths the build context leaves out: the last matching pattern decides, and a
    pattern that matches a folder matches everything in it."""

    def __init__(self, path: Path = ROOT / ".dockerignore"):
        self._rules = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            glob = line.lstrip("!").strip("/")
            self._rules.append((_pattern(glob), negated))

    def excludes(self, relative: str) -> bool:
        parts = relative.strip("/").split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        excluded = False
        for pattern, negated in self._rules:
            if any(pattern.match(prefix) for prefix in prefixes):
                excluded = not negated
        return excluded

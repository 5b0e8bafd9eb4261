"""Where a program spent its time, from py-spy's collapsed stacks (``--profile DIR``).

    python -m bench.profile_summary DIR/worker.txt [--top 25]

Prints the functions with the most samples on top of the stack (self) and anywhere in
it (inclusive), as shares of all samples taken while the program was busy.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = "/".join(Path(path).parts[-2:])
    return f"{match['name']} ({path})"


def summarise(text: str) -> tuple[int, Counter, Counter, Counter]:
    own, inclusive, threads = Counter(), Counter(), Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        thread, frames = frames[0], [short(f) for f in frames[1:]]
        total += samples
        threads[thread.rsplit(": ", 1)[-1]] += samples
        if frames:
            own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return total, own, inclusive, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    total, own, inclusive, threads = summarise(args.file.read_text())
    if not total:
        print("no samples")
        return
    print(f"{total} busy samples; by thread: "
          + ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in threads.most_common(6)))
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"\n{title}:")
        for name, n in counter.most_common(args.top):
            print(f"  {100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()

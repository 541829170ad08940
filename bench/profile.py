"""Tables of where a gateway's CPU goes, from a py-spy `raw` profile (bench/profile.sh makes one).

usage: profile.py RAW_FILE [--by module|function|caller] [--top N]

`module`: samples whose innermost Python frame is in each file (time inside C code, a syscall
included, counts for the Python line that called it). `function`: the same per function.
`caller`: inclusive share of each function (itself and all it calls), which shows e.g. how much of
the CPU sits under the upstream client.
"""
from __future__ import annotations

import argparse
import collections
import re

FRAME = re.compile(r"^(?P<func>.*) \((?P<path>.*?)(?::\d+)?\)$")
# Leaves that are a thread waiting, not working: the SQLite thread blocked on its job queue (py-spy
# counts a timed lock wait as running; `top -H` shows that thread at a fifth of what py-spy gives it).
WAITING = {("_Worker.serve", "gateway/store/sqlite.py"), ("_Worker._main", "gateway/store/sqlite.py")}


def short(path: str) -> str:
    for cut in ("site-packages/", "/work/main/"):
        if cut in path:
            return path.split(cut, 1)[1]
    return re.sub(r".*/lib/python3\.\d+/", "std/", path)


def tables(raw: str, by: str) -> tuple[int, collections.Counter[str]]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not stack or not n.isdigit():
                continue
            frames = []
            for frame in stack.split(";"):
                m = FRAME.match(frame)
                frames.append((m.group("func"), short(m.group("path"))) if m else (frame, ""))
            if frames[-1] in WAITING:
                continue
            total += int(n)
            if by == "caller":
                for name in {f"{func} ({path})" for func, path in frames}:
                    counts[name] += int(n)
            else:
                func, path = frames[-1]
                counts[path if by == "module" else f"{func} ({path})"] += int(n)
    return total, counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--by", choices=("module", "function", "caller"), default="module")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    total, counts = tables(args.raw, args.by)
    print(f"| share of {total} samples | {args.by} |\n| ---: | --- |")
    for name, n in counts.most_common(args.top):
        print(f"| {100 * n / total:.1f}% | `{name}` |")


if __name__ == "__main__":
    main()

"""`python -m bench [NAME...]`: run the named benchmarks (default: all), each printing its own table."""

from __future__ import annotations

import importlib
import platform
import subprocess
import sys

# Each entry is a module in bench/ with a `main()`; add yours here.
BENCHMARKS: list[str] = [
    "anonymize",
    "anonymize-masks",
    "edge",
    "crypto",
    "ingest",
    "prediction",
    "portal",
    "training",
    "sdk-detection",
    "scale",
    "privacy-training",
    "detection-audit",
    "exports",
    "suggestions",
    "soak",
]


def machine() -> str:
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True)
    return f"{platform.node()} · {cpu.stdout.strip() or platform.processor()} · {subprocess.getoutput('nproc')} cores"


def run(names: list[str]) -> int:
    print(f"machine: {machine()}")
    for name in names or BENCHMARKS:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        print(f"\n## {name}  (command: make bench BENCH={name}  ·  python -m bench {name})")
        importlib.import_module(f"bench.{name.replace('-', '_')}").main()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

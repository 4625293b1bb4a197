"""Greets, and shows a third-party requirement at work: `pants run examples/python-app -- 4096`."""

import os
import sys

import humanize


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1_500_000
    name = os.environ.get("GREETER_NAME", "Python")
    print(f"Hello from {name}: {size} bytes is {humanize.naturalsize(size)}.")


if __name__ == "__main__":
    main()

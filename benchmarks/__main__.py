"""`python -m benchmarks`: see benchmarks/cli.py and benchmarks/README.md."""

import sys

from benchmarks.cli import main

if __name__ == "__main__":  # not in the generator's spawned processes
    sys.exit(main())

"""`python -m benchmarks.soak` (the same as `python -m benchmarks soak`)."""

import sys

from benchmarks.soak.cli import main

if __name__ == "__main__":  # not in the load process, which multiprocessing spawns
    sys.exit(main())

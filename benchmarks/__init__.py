"""Load-testing kit for /token: `python -m benchmarks` (see benchmarks/README.md)."""

"""`python -m benchmarks [soak | tls | tracing | render | flames] ...`: the load test
(benchmarks/cli.py), the soak (benchmarks/soak/cli.py), `/token` over mutual TLS with
ApacheBench (benchmarks/tls.py), tracing's cost in alternating rounds (benchmarks/tracing.py),
a report.json's HTML page (benchmarks/render.py) or a flame graph as text
(benchmarks/flames.py). See benchmarks/README.md. The commands are imported here, when chosen:
none imports another."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command, rest = (argv[0], argv[1:]) if argv else ("", argv)
    if command == "soak":
        from benchmarks.soak.cli import main as soak

        return soak(rest)
    if command == "tls":
        from benchmarks.tls import main as tls

        return tls(rest)
    if command == "tracing":
        from benchmarks.tracing import main as tracing

        return tracing(rest)
    if command == "flames":
        from benchmarks.flames import main as flames

        return flames(rest)
    if command == "render":
        from benchmarks.render import main as render

        return render(rest)
    from benchmarks.cli import main as bench

    return bench(argv)


if __name__ == "__main__":  # not in the generator's spawned processes
    sys.exit(main())

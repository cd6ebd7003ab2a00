"""The soak: mixed grants at a fixed rate for minutes, read in windows (service memory and
fds, latency, store growth). `python -m benchmarks soak`; see benchmarks/README.md."""

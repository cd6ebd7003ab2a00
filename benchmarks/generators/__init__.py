"""Load generators: wrk with a Lua script (closed loop), and a multi-process Python
generator (closed and open loop)."""

"""Wiring: assembling stores, the token service and the apps from settings, and running them.

The only layer that knows every backend: everything below receives its stores through the
protocols of `tokensvc.storage.protocols` (and `tokensvc.limits`), so a grant or an endpoint
never learns whether it runs over memory, Redis or Postgres.
"""

"""Observing a store's calls without changing its type: each public coroutine method is
rebound on the instance to a wrapper (metrics time it, tracing makes it a span). Callers
still reach the store through its protocol, and a store nobody observes pays nothing."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

S = TypeVar("S")
Method = Callable[..., Awaitable[object]]


def wrap_public_coroutines(store: S, marker: str, wrap: Callable[[str, Method], Method]) -> S:
    """Rebind each public coroutine method `name` of `store` to `wrap(name, method)`, once:
    `marker` is set on the store, and a store that has it is returned as it is."""
    if getattr(store, marker, False):
        return store
    for name, method in inspect.getmembers(store, inspect.iscoroutinefunction):
        if not name.startswith("_"):
            setattr(store, name, wrap(name, method))
    setattr(store, marker, True)
    return store

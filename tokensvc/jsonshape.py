"""Bounds on JSON a caller sends (the internal API's bodies, and the user claims they carry).

A parser accepts nesting far deeper than anything downstream can take: orjson encodes at most
254 levels (a code carrying deeper `claims` would be minted and then fail to store), and a
recursive walk over 600 levels hits Python's recursion limit. So request JSON is checked once,
iteratively, for depth, size and NUL (which neither Postgres text nor jsonb can hold), and
refused as bad input before anything is stored.
"""

from __future__ import annotations

from typing import Any


def json_problem(value: Any, *, max_depth: int, max_values: int) -> str | None:
    """What is wrong with `value` (a parsed JSON document), or `None`: more than `max_depth`
    levels of nesting (a scalar alone is one level), more than `max_values` values (members,
    elements and keys counted), or a NUL in any string or key. Iterative: any depth is safe."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > max_values:
            return f"more than {max_values} values"
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        if isinstance(item, str):
            if "\x00" in item:
                return "a NUL character in a string"
        elif isinstance(item, dict):
            for key, member in item.items():
                if "\x00" in key:
                    return "a NUL character in a key"
                stack.append((member, depth + 1))
        elif isinstance(item, list):
            stack.extend((element, depth + 1) for element in item)
    return None

"""Form parameters that may be sent more than once: `resource` (RFC 8707 §2) and `audience`
(RFC 8693 §2.1). The form decoder (`tokensvc.http.forms`) joins their values with NUL, which
it refuses inside any value, so the parameters stay one `str` each on the hot path and a
value can never be mistaken for two."""

from __future__ import annotations

from collections.abc import Mapping

REPEATABLE = frozenset({"resource", "audience"})
MULTI = "\x00"


def values(params: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Every value of a repeatable parameter, in the order sent; () when it was not sent."""
    joined = params.get(name)
    return () if joined is None else tuple(joined.split(MULTI))

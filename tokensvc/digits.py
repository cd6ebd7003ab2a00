"""Whole numbers in requests and settings: ASCII digits only, `[0-9]+`.

Python's `int()` and `str.isdigit()` accept far more: digits of every script ("١٢", "１２"),
superscripts ("²", which `isdigit` accepts and `int` then refuses with a `ValueError`),
surrounding white space and underscores ("1_000"). A number on the wire (OIDC Core §3.1.2.1
`max_age`) or in a setting (ports, TTLs) is written in ASCII digits; anything else is refused
as the bad input it is, never taken for a number and never an exception.
"""

from __future__ import annotations

import re

_WHOLE = re.compile(r"[0-9]{1,18}")  # 18 digits fit an int64: no store overflows on one
_SIGNED = re.compile(r"-?[0-9]{1,18}")


def whole_number(raw: str, *, signed: bool = False) -> int | None:
    """`raw` as an integer when it is 1 to 18 ASCII digits (after a `-` when `signed`), else
    `None`."""
    if (_SIGNED if signed else _WHOLE).fullmatch(raw) is None:
        return None
    return int(raw)

"""The /token form parser agrees with the standard library's on what it accepts."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from tokensvc.http.forms import _pairs

BODIES = [
    "grant_type=client_credentials",
    "grant_type=authorization_code&code=a-b_c&redirect_uri=https%3A%2F%2Fa.example%2Fcb",
    "scope=a+b&empty=&flag&&x=%20y",
    "name%3D=v%26w&caf%C3%A9=%E2%82%AC",
    "=novalue&a==b",
    "",
]


@pytest.mark.parametrize("body", BODIES)
def test_same_pairs_as_parse_qsl(body: str) -> None:
    assert _pairs(body) == parse_qsl(body, keep_blank_values=True, errors="strict")


def test_invalid_utf8_escape_is_refused() -> None:
    with pytest.raises(UnicodeDecodeError):
        _pairs("scope=%ff%fe")

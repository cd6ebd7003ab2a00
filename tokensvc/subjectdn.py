"""Subject distinguished names as `tls_client_auth` matches them (RFC 8705 §2.1.2: the
registered `tls_client_auth_subject_dn` is an RFC 4514 string).

The rule, exactly:

* The registered string is read as RFC 4514 writes a DN: relative DNs separated by `,`, most
  specific first (`CN=api,OU=payments,O=Example,C=DE`), attribute-value pairs of a
  multi-valued RDN joined by `+`, each `type=value`.
* A type is a keyword (case-insensitive): CN, L, ST, O, OU, C, STREET, DC, UID (RFC 4514 §3),
  SERIALNUMBER, SN, GIVENNAME, TITLE, EMAILADDRESS or E; or a dotted OID (`2.5.4.3`).
* A value is unescaped per RFC 4514 §2.4 (`\\,` `\\+` `\\"` `\\\\` `\\<` `\\>` `\\;` `\\=`
  `\\#` `\\ `, and `\\XX` hex pairs, which together spell UTF-8); `"` `;` `<` `>` and NUL
  must be escaped, and the `#hex` (BER) form is not accepted. Unescaped spaces around `,`,
  `+` and `=` are dropped (RFC 4514 has significant edge spaces escaped).
* It matches a certificate whose subject has the same RDNs in the same order, each with the
  same set of (type, value) pairs; values are compared exactly (case-sensitive) and the ASN.1
  string type (PrintableString, UTF8String, ...) is ignored.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography import x509

# (dotted OID, value) pairs of each RDN, most specific first (the RFC 4514 order).
DN = tuple[frozenset[tuple[str, str | bytes]], ...]

KEYWORDS = {
    "CN": "2.5.4.3",
    "SN": "2.5.4.4",
    "SERIALNUMBER": "2.5.4.5",
    "C": "2.5.4.6",
    "L": "2.5.4.7",
    "ST": "2.5.4.8",
    "STREET": "2.5.4.9",
    "O": "2.5.4.10",
    "OU": "2.5.4.11",
    "TITLE": "2.5.4.12",
    "GIVENNAME": "2.5.4.42",
    "DC": "0.9.2342.19200300.100.1.25",
    "UID": "0.9.2342.19200300.100.1.1",
    "EMAILADDRESS": "1.2.840.113549.1.9.1",
    "E": "1.2.840.113549.1.9.1",
}
_HEX = frozenset("0123456789abcdefABCDEF")
_SPECIAL = frozenset('"+,;<>\\ #=')
MAX_LENGTH = 4096


class BadDN(ValueError):
    """The registered subject DN is not an RFC 4514 string this module reads; why, in one
    line."""


@lru_cache(maxsize=4096)
def parse(text: str) -> DN:
    """The registered DN `text` as matched against certificates; `BadDN` if malformed."""
    if not text.strip() or len(text) > MAX_LENGTH:
        raise BadDN("a subject DN must be 1 to 4096 characters")
    rdns: list[frozenset[tuple[str, str | bytes]]] = []
    pairs: list[tuple[str, str | bytes]] = []
    i, n = 0, len(text)
    while True:
        equals = text.find("=", i)
        if equals < 0:
            raise BadDN(f"expected type=value at position {i}")
        oid = _type(text[i:equals].strip())
        value, i = _value(text, equals + 1)
        pairs.append((oid, value))
        if i == n:
            break
        if text[i] == ",":
            rdns.append(_rdn(pairs))
            pairs = []
        i += 1  # past "," or "+"
    rdns.append(_rdn(pairs))
    return tuple(rdns)


def of_name(name: x509.Name) -> DN:
    """A certificate's subject in the shape `parse` returns (RFC 4514 order)."""
    return tuple(
        frozenset((attr.oid.dotted_string, attr.value) for attr in rdn)
        for rdn in reversed(name.rdns)
    )


def _rdn(pairs: list[tuple[str, str | bytes]]) -> frozenset[tuple[str, str | bytes]]:
    rdn = frozenset(pairs)
    if len(rdn) != len(pairs):
        raise BadDN("a relative DN names the same attribute value twice")
    return rdn


def _type(raw: str) -> str:
    oid = KEYWORDS.get(raw.upper())
    if oid is not None:
        return oid
    parts = raw.split(".")
    if len(parts) >= 2 and all(p.isascii() and p.isdigit() for p in parts):
        return raw
    raise BadDN(f"unknown attribute type {raw[:40]!r}")


def _value(text: str, i: int) -> tuple[str, int]:
    """The unescaped value starting at `i` and the index of the `,` / `+` after it (or the
    end). Unescaped spaces at either edge are dropped."""
    n = len(text)
    while i < n and text[i] == " ":
        i += 1
    if i < n and text[i] == "#":
        raise BadDN("the #hex form of a value is not accepted; write the value as a string")
    out = bytearray()
    kept = 0  # length of `out` up to the last escaped or non-space character
    while i < n:
        c = text[i]
        if c in ",+":
            break
        if c == "\\":
            if i + 1 < n and text[i + 1] in _SPECIAL:
                out += text[i + 1].encode()
                i += 2
            elif i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
                out.append(int(text[i + 1 : i + 3], 16))
                i += 3
            else:
                raise BadDN(f"a bad escape at position {i}")
            kept = len(out)
            continue
        if c in '";<>' or c == "\x00":
            raise BadDN(f"{c!r} must be escaped at position {i}")
        out += c.encode("utf-8", "surrogatepass")
        if c != " ":
            kept = len(out)
        i += 1
    try:
        value = bytes(out[:kept]).decode("utf-8")
    except UnicodeDecodeError:
        raise BadDN("escaped bytes of a value are not UTF-8") from None
    if not value:
        raise BadDN("an attribute value is empty")
    return value, i

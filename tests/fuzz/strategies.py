"""Hostile requests for the fuzz: hypothesis strategies built around a `World` of real
clients and credentials, so that a good share of requests get past the first check and
reach the grants, the stores and the internal API, while the rest is garbage.

Every strategy yields a `Hostile` request (method, raw path and query, headers, raw body);
`send` puts it on the wire unchanged.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from tests.fuzz.stack import REDIRECTS, World
from tests.harness import INTERNAL_TOKEN

FORM = "application/x-www-form-urlencoded"
METHODS = ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")

# Strings that have broken parsers somewhere.
NASTY = (
    "",
    " ",
    "%",
    "%%",
    "%zz",
    "%ff%fe",
    "%00",
    "\x00",
    "a\x00b",
    "+",
    "&",
    "=",
    "a=b&c",
    "null",
    "[]",
    "{}",
    "\\",
    "../../etc/passwd",
    "é",
    "\u2028",
    "\ufeff",
    "😀",
    "' OR 1=1--",
    "<script>x</script>",
    "${jndi:ldap://x}",
    "\t",
    "\x7f",
    "\x1b[0m",
    "A" * 3000,
    "9" * 40,
    "-1",
    "0",
    "1e309",
    "NaN",
    "true",
    "a.b.c",
    "eyJhbGciOiJub25lIn0.e30.",
    "....",
    "S256",
    "plain",
    "openid",
    "Basic",
    "Bearer",
)
GRANT_TYPES = (
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "urn:ietf:params:oauth:grant-type:device_code",
    "implicit",
    "AUTHORIZATION_CODE",
)
SCOPES = (
    "openid",
    "openid profile email",
    "api:read",
    "api:read api:write",
    "offline_access",
    "admin",
    "openid\x00",
    "openid  profile",
    '"quoted"',
    "a\\b",
    "openid " * 200,
)
TOKEN_PARAMS = (
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
    "client_id",
    "client_secret",
    "username",
    "password",
    "token",
    "token_type_hint",
    "resource",
    "audience",
    "nonce",
)
CONTENT_TYPES = (
    f"{FORM}; charset=utf-8",
    f"{FORM}; charset=latin-1",
    FORM.upper(),
    "application/json",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded;;",
    "*/*",
    "",
)
# Codings aiohttp decodes (gzip, deflate: the body limit applies to what they inflate to) or
# ignores. Bodies that do not decode fail in the HTTP parser, before any handler: test_limits.
COMPRESS = {"gzip": gzip.compress, "deflate": zlib.compress}
FORWARDED = ("1.2.3.4", "::1, x", "", "198.51.100.7, 10.0.0.1", "127.0.0.1", "unknown", "[::1]")
CONTENT_ENCODINGS = ("gzip", "deflate", "identity", "x-evil", "gzip, gzip")
VERIFIER_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


@dataclass(frozen=True)
class Hostile:
    """One request exactly as it goes on the wire (shown by hypothesis when one fails)."""

    method: str
    path: str  # percent-encoded as sent, query included
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Reply:
    method: str
    status: int
    headers: Any
    body: bytes


async def send(http: aiohttp.ClientSession, base: str, req: Hostile) -> Reply:
    """Send `req` unchanged: no quoting of the path, no automatic Content-Type."""
    url = URL(base + req.path, encoded=True)
    async with http.request(
        req.method,
        url,
        data=req.body or None,
        headers=CIMultiDict(req.headers),
        skip_auto_headers=("Content-Type",),
        allow_redirects=False,
    ) as resp:
        return Reply(req.method, resp.status, resp.headers, await resp.read())


# ---------------------------------------------------------------------------- values


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws. Hypothesis favours small integers, so the usual
    case is the smallest value: the fuzz mostly stays near a valid request."""
    return draw(st.integers(1, one_in)) == one_in


def near_misses(value: str) -> list[str]:
    """Values one edit away from a real credential: each must be refused like garbage."""
    flipped = value[:-1] + ("A" if value[-1:] != "A" else "B")
    return [
        value[:-1],
        value + "x",
        flipped,
        " " + value,
        value + " ",
        value.upper(),
        value + "\x00",
        value[: len(value) // 2],
    ]


def _text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NASTY),
        st.text(max_size=max_size),
        st.text(alphabet=VERIFIER_ALPHABET, min_size=1, max_size=max_size * 4),
    )


TEXT = _text()
SHORT_TEXT = _text(10)


_VALUES: dict[tuple[int, tuple[str, ...]], st.SearchStrategy[str]] = {}


def values(world: World) -> st.SearchStrategy[str]:
    """Any parameter value: garbage, a real value, or a near miss of one (built once per
    world and set of decoys: strategies are drawn from thousands of times)."""
    key = (id(world), tuple(world.decoys))
    if key not in _VALUES:
        real = world.credentials() + [p.client_id for p in world.parties.values()]
        misses = [m for v in real + world.decoys for m in near_misses(v)]
        _VALUES[key] = st.one_of(
            TEXT,
            st.sampled_from(real),
            st.sampled_from(misses),
            st.sampled_from(GRANT_TYPES + SCOPES + REDIRECTS),
        )
    return _VALUES[key]


def verifiers(world: World) -> st.SearchStrategy[str]:
    """code_verifier: real ones, and ones of wrong length or alphabet (RFC 7636 §4.1)."""
    return st.one_of(
        st.sampled_from([v for v, _ in world.pkce] + [v for _, _, v in world.codes if v]),
        st.text(alphabet=VERIFIER_ALPHABET, min_size=0, max_size=200),
        st.text(min_size=43, max_size=128),
        st.sampled_from(["a" * 42, "a" * 43, "a" * 128, "a" * 129, "a" * 43 + "+", "=" * 43]),
    )


# ---------------------------------------------------------------------------- encodings


@st.composite
def encoded_form(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> bytes:
    """The pairs as a body: well encoded, raw, with broken escapes or bytes, or not a form."""
    how = (
        draw(st.sampled_from(("raw", "latin-1", "bytes", "json", "binary")))
        if rarely(draw, 4)
        else "urlencode"
    )
    if how == "urlencode":
        return urlencode(pairs).encode()
    if how == "raw":
        return "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
    if how == "latin-1":  # percent escapes that do not decode as UTF-8
        return urlencode(pairs, encoding="latin-1", errors="replace").encode()
    if how == "bytes":  # raw bytes spliced into a well-formed body
        body = urlencode(pairs).encode()
        at = draw(st.integers(0, len(body)))
        return body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    if how == "json":
        return orjson.dumps(dict(pairs))
    return draw(st.binary(max_size=300))


def _basic(client_id: str, secret: str, *, quoted: bool = True) -> str:
    if quoted:
        client_id, secret = quote(client_id, safe=""), quote(secret, safe="")
    raw = f"{client_id}:{secret}".encode("utf-8", "surrogatepass")
    return "Basic " + base64.b64encode(raw).decode()


@st.composite
def client_auth(
    draw: st.DrawFn, world: World, roles: tuple[str, ...]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(headers, form pairs) presenting a client: correctly, wrongly, twice, or malformed."""
    party = world.parties[draw(st.sampled_from(roles))]
    secret = party.secret or ""
    wrong = draw(st.one_of(st.sampled_from(near_misses(secret or "x")), TEXT))
    how = draw(
        st.sampled_from(
            (
                "right",
                "right",
                "right",
                "right",
                "wrong",
                "none",
                "basic-and-post",
                "id-mismatch",
                "malformed",
                "unquoted",
                "scheme",
            )
        )
    )
    method = party.client.auth_method
    presented = secret if how != "wrong" else wrong
    if how == "none":
        return [], []
    if how == "malformed":
        header = draw(
            st.sampled_from(
                (
                    "Basic",
                    "Basic ",
                    "Basic !!!",
                    "Basic " + base64.b64encode(b"no-colon").decode(),
                    "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),
                    "Basic =",
                    "Basic a===",
                    "Basic " + base64.b64encode(b":secret").decode(),
                    "basic    Og==",
                    "Basic " + base64.b64encode(b"%zz:%ff").decode(),
                    "Basic " + base64.b64encode(party.client_id.encode() + b"%00:x").decode(),
                )
            )
        )
        return [("Authorization", header)], []
    if how == "scheme":
        return [
            (
                "Authorization",
                draw(
                    st.sampled_from(
                        (
                            "Bearer x",
                            "Digest a=b",
                            "Negotiate",
                            "x",
                            "Basic" + "A" * 500,
                            f"Bearer {INTERNAL_TOKEN}",
                        )
                    )
                ),
            )
        ], []
    if how == "unquoted":
        return [("Authorization", _basic(party.client_id, presented, quoted=False))], []
    if how == "basic-and-post":
        return (
            [("Authorization", _basic(party.client_id, secret))],
            [("client_id", party.client_id), ("client_secret", secret)],
        )
    if how == "id-mismatch":
        other = draw(st.sampled_from(sorted(world.parties)))
        return (
            [("Authorization", _basic(party.client_id, secret))],
            [("client_id", world.parties[other].client_id)],
        )
    if method == "client_secret_basic":
        return [("Authorization", _basic(party.client_id, presented))], []
    if method == "client_secret_post":
        return [], [("client_id", party.client_id), ("client_secret", presented)]
    pairs = [("client_id", party.client_id)]
    if how == "wrong":
        pairs.append(("client_secret", presented))
    return [], pairs


@st.composite
def grant_params(draw: st.DrawFn, world: World) -> list[tuple[str, str]]:
    """Parameters shaped like a grant, with any of them swapped for something hostile."""
    grant = draw(st.sampled_from(GRANT_TYPES))
    real = not rarely(draw, 3)
    pairs = [("grant_type", grant)]
    if grant.lower() == "authorization_code":
        _, code, verifier = draw(st.sampled_from(world.codes))
        pairs += [
            ("code", code if real else draw(values(world))),
            ("redirect_uri", draw(st.sampled_from(REDIRECTS) | values(world))),
        ]
        if verifier is not None or rarely(draw, 2):
            pairs.append(
                ("code_verifier", verifier if real and verifier else draw(verifiers(world)))
            )
    elif grant == "refresh_token":
        _, token = draw(st.sampled_from(world.refresh_tokens))
        pairs.append(("refresh_token", token if real else draw(values(world))))
    elif grant == "password":
        pairs += [("username", draw(st.just(world.username) | TEXT)), ("password", draw(TEXT))]
    if rarely(draw, 2):
        pairs.append(("scope", draw(st.sampled_from(SCOPES) | TEXT)))
    return pairs


@st.composite
def mangled(draw: st.DrawFn, pairs: list[tuple[str, str]], world: World) -> list[tuple[str, str]]:
    """Drop, repeat, empty out or add parameters."""
    out = list(pairs)
    if out and rarely(draw, 4):
        del out[draw(st.integers(0, len(out) - 1))]
    if out and rarely(draw, 6):
        out.append(out[draw(st.integers(0, len(out) - 1))])
    if out and rarely(draw, 6):
        out.insert(0, (out[draw(st.integers(0, len(out) - 1))][0], draw(values(world))))
    if out and rarely(draw, 8):
        i = draw(st.integers(0, len(out) - 1))
        out[i] = (out[i][0], "")
    if rarely(draw, 3):
        out += draw(
            st.lists(
                st.tuples(st.sampled_from(TOKEN_PARAMS) | SHORT_TEXT, values(world)), max_size=3
            )
        )
    return draw(st.permutations(out)) if rarely(draw, 4) else out


@st.composite
def extra_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    if rarely(draw, 10):
        headers.append(("Cookie", draw(st.sampled_from(("a=b", "=;;=", "x=" + "%" * 50)))))
    if rarely(draw, 10):  # one line or several (RFC 7230 §3.2.2: they are one list)
        lines = draw(st.lists(st.sampled_from(FORWARDED), min_size=1, max_size=4))
        headers += [("X-Forwarded-For", line) for line in lines]
    return headers


def _query(draw: st.DrawFn, world: World) -> str:
    if not rarely(draw, 6):
        return ""
    return "?" + draw(
        st.sampled_from(
            (
                "grant_type=client_credentials",
                "%zz",
                "a=%ff",
                "client_id=" + quote(world.parties["machine"].client_id),
                "&&==",
                "x=" + "y" * 500,
            )
        )
    )


@st.composite
def form_requests(
    draw: st.DrawFn,
    world: World,
    path: str,
    *,
    params: str = "grant",
    roles: tuple[str, ...] | None = None,
) -> Hostile:
    """A hostile request to a form endpoint that authenticates clients (`/token`,
    `/introspect`, `/revoke`). `params` picks the shape: "grant" or "token"."""
    headers, pairs = draw(client_auth(world, roles or tuple(sorted(world.parties))))
    if params == "grant":
        pairs += draw(grant_params(world))
    else:
        pairs += draw(token_params(world))
    pairs = draw(mangled(pairs, world))
    body = draw(encoded_form(pairs))
    content_type = draw(st.sampled_from(CONTENT_TYPES)) if rarely(draw, 5) else FORM
    if content_type:
        headers = [*headers, ("Content-Type", content_type)]
    headers += draw(extra_headers())
    headers, body = draw(content_encoded(headers, body))
    method = draw(st.sampled_from(METHODS)) if rarely(draw, 10) else "POST"
    return Hostile(method, path + _query(draw, world), tuple(headers), body)


@st.composite
def content_encoded(
    draw: st.DrawFn, headers: list[tuple[str, str]], body: bytes
) -> tuple[list[tuple[str, str]], bytes]:
    """Now and then, the body compressed (the hostile part is what it inflates to)."""
    if not rarely(draw, 10):
        return headers, body
    coding = draw(st.sampled_from(CONTENT_ENCODINGS))
    if coding == "gzip, gzip":  # compressed twice: what one pass inflates is still gzip
        return [*headers, ("Content-Encoding", coding)], gzip.compress(gzip.compress(body))
    return [*headers, ("Content-Encoding", coding)], COMPRESS.get(coding, bytes)(body)


@st.composite
def token_params(draw: st.DrawFn, world: World) -> list[tuple[str, str]]:
    """`token` (+ `token_type_hint`) for /introspect and /revoke: real tokens of any client,
    near misses, and JWT-shaped garbage."""
    real = [t for _, t in world.access_tokens + world.refresh_tokens]
    token = draw(
        st.one_of(
            st.sampled_from(real),
            values(world),
            st.sampled_from([t[:-2] + "AA" for t in real if t.count(".") == 2]),
            st.builds(lambda a, b, c: f"{a}.{b}.{c}", SHORT_TEXT, SHORT_TEXT, SHORT_TEXT),
        )
    )
    pairs = [("token", token)]
    if draw(st.booleans()):
        pairs.append(
            (
                "token_type_hint",
                draw(st.sampled_from(("access_token", "refresh_token", "id_token", "")) | TEXT),
            )
        )
    return pairs


# ---------------------------------------------------------------------------- internal API


JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        TEXT,
        st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63, 2**64 - 1]),
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SHORT_TEXT, inner, max_size=4),
    max_leaves=8,
)


CODE_FIELDS = (
    "client_id",
    "redirect_uri",
    "scope",
    "sub",
    "auth_time",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "acr",
    "amr",
    "sid",
    "claims",
)


@st.composite
def code_bodies(draw: st.DrawFn, world: World, now: int) -> dict[str, Any]:
    """A `/internal/codes` body: a valid one with fields dropped or swapped for hostile JSON."""
    role = draw(st.sampled_from(sorted(world.parties)))
    party = world.parties[role]
    _, challenge = draw(st.sampled_from(world.pkce))
    body: dict[str, Any] = {
        "client_id": party.client_id,
        "redirect_uri": (party.client.redirect_uris or ("https://app.example.com/cb",))[0],
        "scope": draw(st.sampled_from(SCOPES[:3])),
        "sub": draw(st.just("user-1") | TEXT),
        "auth_time": draw(st.just(now - 5) | st.integers(min_value=1, max_value=2**64 - 1)),
        "nonce": draw(TEXT),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "acr": draw(TEXT),
        "amr": draw(st.just(["pwd"]) | st.lists(TEXT, max_size=3)),
        "sid": draw(TEXT),
        "claims": draw(
            st.just({"email": "ada@example.com", "name": "Ada"})
            | st.dictionaries(
                st.sampled_from(("email", "name", "iss", "sub", "aud", "exp", "nonce"))
                | SHORT_TEXT,
                JSON_VALUES,
                max_size=5,
            )
        ),
    }
    for name in draw(st.lists(st.sampled_from(CODE_FIELDS), max_size=3, unique=True)):
        if draw(st.booleans()):
            del body[name]
        else:
            body[name] = draw(JSON_VALUES)
    body.update(draw(st.dictionaries(SHORT_TEXT, JSON_VALUES, max_size=2)))
    return body


@st.composite
def internal_requests(
    draw: st.DrawFn, world: World, now: int
) -> tuple[Hostile, dict[str, Any] | None]:
    """A hostile `/internal/codes` request and, when its body is a JSON object, that object."""
    body = draw(code_bodies(world, now))
    how = draw(
        st.sampled_from(
            (
                "json",
                "json",
                "json",
                "json",
                "ascii",
                "form",
                "scalar",
                "deep",
                "deep claims",
                "binary",
                "truncated",
            )
        )
    )
    parsed: dict[str, Any] | None = None
    if how in ("json", "ascii"):
        raw, parsed = (
            json.dumps(body, ensure_ascii=how == "ascii").encode("utf-8", "surrogatepass"),
            body,
        )
    elif how == "form":
        raw = urlencode({k: str(v) for k, v in body.items()}).encode()
    elif how == "scalar":
        raw = draw(st.sampled_from((b"null", b"[]", b"1", b'"x"', b"", b"NaN", b"{}")))
    elif how == "deep":
        raw = b"[" * draw(st.integers(500, 5000)) + b"]" * draw(st.integers(0, 5000))
    elif how == "deep claims":  # a valid body whose claims nest deeper than any encoder writes
        depth = draw(st.integers(2, 1000))
        nested = "[" * depth + '"x"' + "]" * depth
        shape = draw(st.sampled_from(('{"deep": %s}', '{"a": {"b": %s}}', '{"list": [1, %s]}')))
        mark = "@@deep-claims@@"
        text = json.dumps({**body, "claims": mark}).replace(f'"{mark}"', shape % nested)
        raw = text.encode("utf-8", "surrogatepass")
    elif how == "truncated":
        whole = json.dumps(body).encode()
        raw = whole[: draw(st.integers(0, len(whole) - 1))]
    else:
        raw = draw(st.binary(max_size=200))
    bearer = draw(
        st.sampled_from(
            (
                f"Bearer {INTERNAL_TOKEN}",
                f"Bearer {INTERNAL_TOKEN}",
                f"Bearer {INTERNAL_TOKEN}",
                f"bearer {INTERNAL_TOKEN}",
                f"Bearer   {INTERNAL_TOKEN}  ",
                f"Bearer {INTERNAL_TOKEN}x",
                f"Bearer {INTERNAL_TOKEN[:-1]}",
                "Bearer",
                "Bearer ",
                f"Basic {INTERNAL_TOKEN}",
                INTERNAL_TOKEN,
                f"Bearer {INTERNAL_TOKEN.upper()}",
                "",
            )
        )
    )
    headers = [("Authorization", bearer)] if bearer else []
    headers.append(
        (
            "Content-Type",
            draw(st.sampled_from(("application/json", "application/json", FORM, "text/plain", ""))),
        )
    )
    headers += draw(extra_headers())
    headers, raw = draw(content_encoded(headers, raw))
    method = draw(st.sampled_from(METHODS)) if rarely(draw, 10) else "POST"
    return Hostile(method, "/internal/codes", tuple(headers), raw), parsed


@st.composite
def client_paths(draw: st.DrawFn, world: World) -> str:
    """`/internal/clients/{client_id}` with real, near-miss, escaped and garbage ids."""
    real = [p.client_id for p in world.parties.values()]
    value = draw(
        st.sampled_from(real) | st.sampled_from([m for r in real for m in near_misses(r)]) | TEXT
    )
    how = draw(st.sampled_from(("quoted", "quoted", "raw-escapes")))
    if how == "quoted":
        return "/internal/clients/" + quote(value, safe="", errors="surrogatepass")
    return "/internal/clients/" + draw(
        st.sampled_from(("%", "%zz", "%ff", "%00", "..%2F..", "a%2Fb", "%2e%2e", "x" * 3000))
    )


# ---------------------------------------------------------------------------- /authorize


# Strings that Python's `int()` or `str.isdigit()` take for numbers, or nearly: a number in a
# request is ASCII digits only.
NUMBER_LOOKALIKES = (
    "²",  # superscript two: isdigit() says yes, int() raises
    "٣",  # Arabic-Indic three: int() gives 3
    "１２",  # fullwidth twelve
    "৫",  # Bengali five
    " 5",
    "5 ",
    "1_0",
    "+5",
    "-1",
    "1e3",
    "0x10",
)

AUTHORIZE_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "response_mode",
    "request",
    "request_uri",
    "login_hint",
    "ui_locales",
)
BAD_REDIRECTS = (
    "https://app.example.com/cb/",
    "https://APP.example.com/cb",
    "https://app.example.com/cb?x=1",
    "https://app.example.com/cb#f",
    "https://evil.example/cb",
    "//evil.example/cb",
    "javascript:alert(1)",
    "https://app.example.com/cb2?tenant=a+b",
    "https://app.example.com/cb2",
    "http://app.example.com/cb",
    "https://app.example.com@evil.example/cb",
    "https://app.example.com/CB",
    " https://app.example.com/cb",
)


@st.composite
def authorize_pairs(draw: st.DrawFn, world: World) -> list[tuple[str, str]]:
    """An authorization request: mostly valid, then parameters swapped, dropped or repeated."""
    role = draw(st.sampled_from(sorted(world.parties)))
    party = world.parties[role]
    _, challenge = draw(st.sampled_from(world.pkce))
    uris = party.client.redirect_uris or REDIRECTS[:1]
    pairs = [
        (
            "response_type",
            draw(
                st.just("code")
                | st.sampled_from(("token", "id_token", "code id_token", "CODE", ""))
                | TEXT
            ),
        ),
        # Never a real credential as client_id: the internal API's log line names the path
        # it was asked for, client_id included (client ids are public, secrets are not).
        (
            "client_id",
            draw(st.sampled_from(near_misses(party.client_id)) | SHORT_TEXT)
            if rarely(draw, 6)
            else party.client_id,
        ),
        (
            "redirect_uri",
            draw(st.sampled_from(BAD_REDIRECTS) | TEXT)
            if rarely(draw, 5)
            else draw(st.sampled_from(uris)),
        ),
        ("scope", draw(st.sampled_from(SCOPES) | TEXT)),
        ("state", draw(TEXT)),
        ("nonce", draw(TEXT)),
        ("code_challenge", draw(TEXT) if rarely(draw, 4) else challenge),
        ("code_challenge_method", draw(st.sampled_from(("S256", "S256", "plain", "s256", "")))),
    ]
    for name in draw(st.lists(st.sampled_from(AUTHORIZE_PARAMS), max_size=3)):
        pairs.append(
            (
                name,
                draw(
                    st.sampled_from(
                        {
                            "prompt": (
                                "none",
                                "login",
                                "consent",
                                "none login",
                                "select_account",
                                "  ",
                            ),
                            "max_age": (*NUMBER_LOOKALIKES, "0", "60", "99999999999"),
                            "response_mode": ("query", "fragment", "form_post", "web_message"),
                        }.get(name, ("x",))
                    )
                    | TEXT
                ),
            )
        )
    return draw(mangled(pairs, world))


@st.composite
def authorize_requests(draw: st.DrawFn, world: World, cookies: tuple[str, ...]) -> Hostile:
    pairs = draw(authorize_pairs(world))
    how = draw(st.sampled_from(("urlencode", "urlencode", "urlencode", "raw", "latin-1", "plus")))
    if how == "urlencode":
        query = urlencode(pairs)
    elif how == "plus":  # spaces as %20 and '+' kept literal
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='+')}" for k, v in pairs)
    elif how == "latin-1":
        query = urlencode(pairs, encoding="latin-1", errors="replace")
    else:  # structure characters unescaped, the rest percent-encoded as a browser would
        query = "&".join(f"{k}={v}" for k, v in pairs)
        query = quote(query, safe="&=%+/:?;@!$'()*,~", errors="surrogatepass")
    headers = []
    cookie = draw(st.sampled_from((*cookies, "", "tokensvc_session=garbage", "%%%=")))
    if cookie:
        headers.append(("Cookie", cookie))
    method = draw(st.sampled_from(("POST", "PUT", "DELETE", "HEAD"))) if rarely(draw, 10) else "GET"
    return Hostile(method, "/authorize?" + query, tuple(headers), b"")

"""DPoP proofs under hostile input (RFC 9449 §4.3): at `/token` with a client_credentials grant
(with server nonces off and on) and at `/userinfo` with `Authorization: DPoP`. Each request
carries a valid proof, or one with one claim or header member broken, gone or of the wrong
JSON type, a private or foreign `jwk`, `none`/HS256 headers, a wrong `htm`/`htu`, an old or
future `iat`, a replayed proof, two `DPoP` headers, or garbage (oversized, non-ASCII). The
answer is a token (`token_type` DPoP whenever a proof came) or a well-formed OAuth error —
never a 5xx (the stack checks its log for tracebacks on the way out).

Proofs are dated by the service's clock (the harness freezes it when the stack starts), so a
"valid" proof stays valid however long the module runs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import _urls, fuzz
from tests.fuzz.expect import ROUTING_ERRORS, error_reply, json_body, token_reply
from tests.fuzz.stack import Stack, running_stack
from tests.fuzz.strategies import FORM, JSON_VALUES, TEXT, Hostile, Reply, rarely, send
from tests.harness import INTERNAL_TOKEN
from tests.jose import dpop_proof, jwk_thumbprint, keypair
from tokensvc.dpopproof import IAT_WINDOW, token_hash

TOKEN_ERRORS = (
    None,
    "invalid_dpop_proof",
    "invalid_request",
    "use_dpop_nonce",
    "invalid_client",
    "slow_down",
)
USERINFO_ERRORS = frozenset({"invalid_request", "invalid_token", "insufficient_scope"})
CLAIMS = ("htm", "htu", "iat", "jti", "ath", "nonce")
MEMBERS = ("typ", "alg", "jwk", "kid", "crit")
NONCES = {"dpop_nonce": True, "internal_token": INTERNAL_TOKEN}
# Header values no proof parser should choke on: sizes either side of the service's 8 KiB
# proof limit and aiohttp's 8190-byte header limit, JWT-shaped junk, non-ASCII.
GARBAGE = (
    "",
    " ",
    "a.b.c",
    "..",
    "a.b.c.d.e",
    "%%.%%.%%",
    "eyJhbGciOiJub25lIn0.e30.",
    "A" * 8192,
    "A" * 8193,
    "A.A." + "A" * 8100,
    "é.ü.ß",
    "😀.😀.😀",
    "\ufeffeyJ0eXAiOiJkcG9wK2p3dCJ9.e30.e30",
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _header_safe(value: str) -> str:
    """What an HTTP client can put in a header at all: no CR, LF or other controls (those
    die in the HTTP parser, before any handler: tests/fuzz/test_limits.py)."""
    return "".join(c for c in value if c == "\t" or not (ord(c) < 0x20 or ord(c) == 0x7F))


class Proofs:
    """Proofs for one endpoint: `htm`/`htu` right, dated by the service's clock, with the
    access token's `ath` and the server nonce where they apply. `spent` are valid proofs
    already used once, before the fuzz (a fixed set: hypothesis wants draws that do not
    depend on what earlier examples did), for the fuzz to replay."""

    def __init__(
        self,
        clock: Callable[[], float],
        url: str,
        method: str,
        token: str | None = None,
        nonce: str | None = None,
    ) -> None:
        self.clock, self.url, self.method = clock, url, method
        self.key, self.other = keypair(), keypair()
        self.extra: dict[str, Any] = {"ath": token_hash(token) if token else None, "nonce": nonce}
        self.spent: tuple[str, ...] = ()

    def valid(self, header: dict[str, Any] | None = None, **claims: Any) -> str:
        """A proof, `claims` changed (None drops one), signed by the key."""
        body: dict[str, Any] = {"htm": self.method, "htu": self.url, "iat": int(self.clock())}
        body.update(self.extra, **claims)
        return dpop_proof(self.key, body.pop("htu"), body.pop("htm"), header=header, **body)

    def spend(self, stack: Stack, request_of: Callable[[list[str]], Hostile]) -> None:
        """Use three valid proofs once each (they must be accepted), for replays."""
        spent = tuple(self.valid() for _ in range(3))
        for proof in spent:
            reply = stack.run(
                send(stack.harness.http, stack.harness.public_url, request_of([proof]))
            )
            assert reply.status == 200, reply
        self.spent = spent

    @property
    def jkt(self) -> str:
        return jwk_thumbprint(self.key)


@st.composite
def proof_values(draw: st.DrawFn, proofs: Proofs) -> list[str]:
    """The `DPoP` header values of one request: none, one (valid, broken or garbage) or two."""
    how = draw(
        st.sampled_from(
            ("valid",) * 3
            + ("claim", "claim", "member", "special", "signature", "replay", "two", "garbage")
            + ("none",)
        )
    )
    if how == "none":
        return []
    if how == "two":
        return [proofs.valid(), proofs.valid()]
    if how == "replay" and proofs.spent:
        return [draw(st.sampled_from(proofs.spent))]
    if how == "garbage":
        return [_header_safe(draw(st.sampled_from(GARBAGE) | TEXT))]
    if how == "claim":
        return [_header_safe(proofs.valid(**{draw(st.sampled_from(CLAIMS)): draw(_claim(proofs))}))]
    if how == "special":
        return [draw(_special(proofs))]
    proof = proofs.valid()
    head, body, signature = proof.split(".")
    if how == "member":  # one header member gone or of any JSON value; the signature kept
        header = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        name = draw(st.sampled_from(MEMBERS))
        if rarely(draw, 3):
            header.pop(name, None)
        else:
            header[name] = draw(JSON_VALUES)
        head = _b64(json.dumps(header).encode())  # json: JSON_VALUES has big integers
    elif how == "signature":
        signature = draw(st.sampled_from(("", "AAAA", signature[::-1], signature + "A", "%%")))
    return [f"{head}.{body}.{signature}"]


@st.composite
def _claim(draw: st.DrawFn, proofs: Proofs) -> Any:
    """A wrong value for any claim: near misses first (htm, htu, an iat just outside the
    window), then any JSON value; None drops the claim."""
    now = int(proofs.clock())
    near = (
        None,
        "GET" if proofs.method == "POST" else "POST",
        proofs.method.lower(),
        proofs.url + "x",
        proofs.url + "?q=1",  # a query is ignored: this one is still right
        proofs.url.upper(),  # scheme and host fold, the path does not
        now - IAT_WINDOW - 5,
        now + IAT_WINDOW + 5,
        now - IAT_WINDOW,
        float(now),
        "x" * 257,
        "made-up",
    )
    return draw(st.sampled_from(near) | JSON_VALUES)


@st.composite
def _special(draw: st.DrawFn, proofs: Proofs) -> str:
    """Proofs whose signing itself is wrong: `none`, HMAC, a private or a foreign jwk, an alg
    the key does not have, another typ."""
    now, key = int(proofs.clock()), proofs.key
    how = draw(st.sampled_from(("none", "hs256", "private", "foreign", "rs256", "typ", "kid")))
    if how == "private":
        return proofs.valid(header={"jwk": key.as_dict(private=True)})
    if how == "typ":
        return proofs.valid(header={"typ": draw(st.sampled_from(("JWT", "DPOP+JWT", "dpop")))})
    if how == "kid":  # a kid is only a hint (RFC 9449 §4.2): still valid
        return proofs.valid(header={"kid": "anything"})
    if how == "foreign":  # signed by one key, another's public jwk in the header
        return dpop_proof(
            proofs.other,
            proofs.url,
            proofs.method,
            header={"jwk": key.as_dict(private=False)},
            iat=now,
            **proofs.extra,
        )
    head = {"typ": "dpop+jwt", "jwk": key.as_dict(private=False)}
    head["alg"] = {"none": "none", "hs256": "HS256", "rs256": "RS256"}[how]
    body = {"htm": proofs.method, "htu": proofs.url, "iat": now, "jti": f"{how}-{now}"}
    signature = "" if how == "none" else _b64(b"\x00" * 32)
    return f"{_b64(orjson.dumps(head))}.{_b64(orjson.dumps(body))}.{signature}"


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _dpop_headers(values: list[str]) -> list[tuple[str, str]]:
    return [("DPoP", value) for value in values]


def _token_fuzz(stack: Stack, nonce: str | None, expected: set[str | None]) -> set[str | None]:
    """Fuzz client_credentials at /token; returns the outcomes reached."""
    h = stack.harness
    machine = stack.world.parties["machine"]
    assert machine.secret is not None
    right: str = machine.secret
    proofs = Proofs(h.clock, h.settings.issuer + "/token", "POST", nonce=nonce)

    def request_of(values: list[str], secret: str = right) -> Hostile:
        headers = [("Content-Type", FORM), ("Authorization", _basic(machine.client_id, secret))]
        return Hostile(
            "POST", "/token", (*headers, *_dpop_headers(values)), b"grant_type=client_credentials"
        )

    @st.composite
    def requests(draw: st.DrawFn) -> Hostile:
        secret = right if not rarely(draw, 8) else "wrong-secret"
        return request_of(draw(proof_values(proofs)), secret)

    proofs.spend(stack, request_of)
    outcomes: set[str | None] = set()

    @fuzz(examples=150)
    @given(request=requests())
    def probe(request: Hostile) -> None:
        reply = stack.run(send(h.http, h.public_url, request))
        error = token_reply(reply)
        assert error in TOKEN_ERRORS, reply
        if nonce is not None:  # RFC 9449 §8: every answer carries the next nonce
            assert reply.headers.get("DPoP-Nonce"), reply
        if error == "use_dpop_nonce":
            assert reply.headers.get("DPoP-Nonce"), reply
        if error is None:  # a proof always binds: the token says so and names our key
            body = json_body(reply)
            if any(name == "DPoP" for name, _ in request.headers):
                assert body["token_type"] == "DPoP", reply
                claims = stack.run(h.verify(body["access_token"], typ="at+jwt"))
                assert claims["cnf"] == {"jkt": proofs.jkt}, claims
            else:
                assert body["token_type"] == "Bearer", reply
        outcomes.add(error)

    probe()
    assert expected <= outcomes, outcomes
    return outcomes


def test_hostile_dpop_proofs_at_token_get_oauth_errors_never_a_server_error(
    token_stack: Stack,
) -> None:
    _token_fuzz(token_stack, None, {None, "invalid_dpop_proof"})


@pytest.fixture(scope="module")
def nonce_stack(request: pytest.FixtureRequest, backend: str, log_sink: Any) -> Iterator[Stack]:
    """The token service with server nonces on (RFC 9449 §8), keyed from its internal
    token as every replica's are."""
    with running_stack(
        backend, _urls(request, backend, "nonce"), log_sink=log_sink, settings=NONCES
    ) as stack:
        yield stack


def test_hostile_dpop_proofs_with_server_nonces_never_get_a_server_error(
    nonce_stack: Stack,
) -> None:
    h = nonce_stack.harness
    machine = nonce_stack.world.parties["machine"]
    assert machine.secret is not None
    first = nonce_stack.run(
        h.token(machine.client, machine.secret, grant_type="client_credentials")
    )
    nonce = first.headers["DPoP-Nonce"]  # valid for this window and the next
    _token_fuzz(nonce_stack, nonce, {None, "invalid_dpop_proof", "use_dpop_nonce"})


async def _dpop_token(stack: Stack, proofs: Proofs) -> str:
    """An openid access token bound to `proofs.key`, from a code of the Basic client."""
    h, party = stack.harness, stack.world.parties["basic"]
    assert party.secret is not None
    code, verifier = await h.mint_code(party.client, scope="openid")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": party.client.redirect_uris[0],
        "code_verifier": verifier or "",
    }
    reply = await h.post_token(
        form, basic=(party.client_id, party.secret), headers={"DPoP": proofs.valid()}
    )
    assert reply.status == 200 and reply.body["token_type"] == "DPoP", reply
    return str(reply.body["access_token"])


def userinfo_reply(reply: Reply) -> str | None:
    """`/userinfo`: claims, or an RFC 6750 / RFC 9449 §7.1 challenge saying why not."""
    if reply.status == 200:
        assert isinstance(json_body(reply).get("sub"), str), reply
        return None
    if reply.status in (401, 403):
        challenge = reply.headers["WWW-Authenticate"]
        assert challenge.startswith(("Bearer ", "DPoP ")), reply
        return str(json_body(reply).get("error", "unauthorized"))
    return error_reply(reply, USERINFO_ERRORS | ROUTING_ERRORS)


def test_hostile_dpop_proofs_at_userinfo_never_get_a_server_error(token_stack: Stack) -> None:
    stack, h = token_stack, token_stack.harness
    bound = Proofs(h.clock, h.settings.issuer + "/token", "POST")
    token = stack.run(_dpop_token(stack, bound))
    proofs = Proofs(h.clock, h.settings.issuer + "/userinfo", "GET", token=token)
    proofs.key = bound.key  # the userinfo proofs are of the token's key

    def request_of(values: list[str], scheme: str = "DPoP", presented: str = token) -> Hostile:
        headers = (("Authorization", f"{scheme} {presented}"), *_dpop_headers(values))
        return Hostile("GET", "/userinfo", headers, b"")

    @st.composite
    def requests(draw: st.DrawFn) -> Hostile:
        scheme = draw(st.sampled_from(("DPoP", "DPoP", "DPoP", "Bearer", "dpop")))
        presented = token if not rarely(draw, 8) else token[:-1]
        return request_of(draw(proof_values(proofs)), scheme, presented)

    proofs.spend(stack, request_of)
    outcomes: set[str | None] = set()

    @fuzz(examples=150)
    @given(request=requests())
    def probe(request: Hostile) -> None:
        reply = stack.run(send(h.http, h.public_url, request))
        outcome = userinfo_reply(reply)
        assert outcome in (None, "invalid_token", "invalid_request"), reply
        outcomes.add(outcome)

    probe()
    assert {None, "invalid_token"} <= outcomes, outcomes

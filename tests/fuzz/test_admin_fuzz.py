"""The admin API under hostile input: client metadata, resources, federations and secret
rotations of every shape (fields of the wrong type, nasty strings, NUL bytes, deep nesting,
not JSON at all), on any path, with any bearer.

Never a 5xx; every refusal is a JSON error of the API's vocabulary and writes nothing; what the
API accepts it shows back exactly (`GET`), and a machine client it registers gets a token with
the secret it returned once. The world's credentials stay intact throughout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import _urls, fuzz
from tests.fuzz.expect import error_reply, json_body
from tests.fuzz.stack import Stack, running_stack
from tests.fuzz.strategies import NASTY, TEXT, Hostile, rarely, send
from tokensvc.models import AUTH_METHODS

ADMIN_TOKEN = "admin-fuzz-token-0123456789abcdef"
ADMIN_ERRORS = frozenset(
    {
        "invalid_client_metadata",
        "invalid_redirect_uri",
        "invalid_request",
        "unauthorized",
        "not_found",
        "conflict",
        "method_not_allowed",
    }
)
STATUS_OF = {"unauthorized": 401, "not_found": 404, "conflict": 409, "method_not_allowed": 405}
# Every method there is, and one that is refused (secrets are kept only hashed).
METHODS = (*AUTH_METHODS, "client_secret_jwt")
GRANTS = ("client_credentials", "authorization_code", "refresh_token", "password", "implicit")
URIS = ("https://app.example.com/cb", "http://127.0.0.1/cb", "http://evil.example/cb", "x:/y")


@pytest.fixture(scope="module")
def admin_stack(request: pytest.FixtureRequest, backend: str, log_sink: Any) -> Iterator[Stack]:
    urls = _urls(request, backend, "admin")
    settings = {"admin_token": ADMIN_TOKEN}
    with running_stack(backend, urls, log_sink=log_sink, settings=settings) as stack:
        stack.harness.remember(ADMIN_TOKEN)
        yield stack


VALID = {"client_name": "fuzz", "grant_types": ["client_credentials"], "scope": "api:read"}
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def _field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything at all."""
    return st.one_of(good, good, good, JSONISH)


METADATA = st.fixed_dictionaries(
    {},
    optional={
        "client_name": _field(st.sampled_from(["billing", "", " ", *NASTY[:12]])),
        "grant_types": _field(st.lists(st.sampled_from(GRANTS), max_size=3)),
        "redirect_uris": _field(st.lists(st.sampled_from(URIS + NASTY[:8]), max_size=2)),
        "scope": _field(st.sampled_from(["api:read", "openid profile", "", 'a"b', *NASTY[:6]])),
        "token_endpoint_auth_method": _field(st.sampled_from(METHODS)),
        "jwks": _field(st.just({"keys": []})),
        "jwks_uri": _field(st.sampled_from(["https://k.example/jwks", "http://x/j", "%"])),
        "resources": _field(st.lists(st.sampled_from(["https://api.example", "urn:x"]))),
        "rate_limit": _field(st.sampled_from([1, 0.5, 0, -1, 1e9, 100_000])),
        "rate_burst": _field(st.sampled_from([1, 0, 10**12])),
        "require_consent": _field(st.booleans()),
        "dpop_bound_access_tokens": _field(st.booleans()),
        "federated_subject": _field(TEXT),
        "tls_client_auth_subject_dn": _field(st.sampled_from(["CN=a,O=b", "", "=", "CN"])),
        "backchannel_logout_uri": _field(st.sampled_from(["https://rp.example/bc", "http://x"])),
    },
)


@st.composite
def admin_requests(draw: st.DrawFn, known: list[str]) -> Hostile:
    target = draw(st.sampled_from(["clients", "client", "secret", "resources", "federations"]))
    # The same draws whatever `known` holds (hypothesis replays them): which known id, or text.
    pick, text = draw(st.integers(0, 1000)), draw(TEXT)
    some_id = known[pick % len(known)] if known and pick % 2 else text
    segment = quote(some_id, safe="") or "x"
    path, method = {
        "clients": ("/admin/clients", "POST"),
        "client": (f"/admin/clients/{segment}", draw(st.sampled_from(["PUT", "GET", "PATCH"]))),
        "secret": (f"/admin/clients/{segment}/secret", "POST"),
        "resources": ("/admin/resources", "POST"),
        "federations": ("/admin/federations", "POST"),
    }[target]
    if target in ("clients", "client"):
        # Mostly a valid registration with a few fields changed, so the accepted side (what
        # is shown back, what gets tokens) is explored as much as the refusals.
        base = {} if rarely(draw, 4) else VALID
        body: Any = {**base, **draw(METADATA)}
    elif target == "secret":
        body = draw(st.fixed_dictionaries({}, optional={"previous_secret_ttl": JSONISH}))
    elif target == "resources":
        body = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "identifier": _field(st.sampled_from(["https://api.example", "urn:a:b"])),
                    "scopes": _field(st.lists(st.sampled_from(["a", "openid", " "]))),
                    "access_token_ttl": JSONISH,
                },
            )
        )
    else:
        body = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "issuer": _field(st.sampled_from(["https://k8s.example", "http://x"])),
                    "jwks_uri": _field(st.sampled_from(["https://k8s.example/keys"])),
                    "jwks": JSONISH,
                },
            )
        )
    raw = draw(st.binary(max_size=40)) if rarely(draw, 12) else orjson.dumps(body)
    bearer = (
        draw(st.sampled_from(["", "x", ADMIN_TOKEN + "x"])) if rarely(draw, 10) else ADMIN_TOKEN
    )
    headers = (("Authorization", f"Bearer {bearer}"), ("Content-Type", "application/json"))
    return Hostile(method, path, headers, raw)


def test_the_admin_api_answers_hostile_input_and_keeps_what_it_accepts(
    admin_stack: Stack,
) -> None:
    stack, h = admin_stack, admin_stack.harness
    sentinel = stack.plant()
    known: list[str] = []
    accepted: list[str] = []  # machine clients that got a token with their one-time secret

    async def probe_once(request: Hostile) -> None:
        reply = await send(h.http, h.internal_url, request)
        if reply.status >= 400:
            error = error_reply(reply, ADMIN_ERRORS, no_store=False, statuses=STATUS_OF)
            assert (error == "unauthorized") == (reply.status == 401), reply
            return
        assert reply.status in (200, 201), reply
        body = json_body(reply)
        h.remember(body.get("client_secret"))
        if "client_id" not in body:
            return
        known.append(body["client_id"])
        async with h.http.get(
            f"{h.internal_url}/admin/clients/{body['client_id']}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as resp:
            shown = await resp.json()
        assert shown == {k: v for k, v in body.items() if not k.startswith("client_secret")}
        secret = body.get("client_secret")
        basic = body["token_endpoint_auth_method"] == "client_secret_basic"
        machine = "client_credentials" in body["grant_types"] and not body.get("resources")
        if secret and basic and machine:
            token = await h.post_token(
                {"grant_type": "client_credentials"}, basic=(body["client_id"], secret)
            )
            assert token.status == 200, token
            accepted.append(body["client_id"])

    @fuzz(examples=150)
    @given(data=st.data())
    def probe(data: st.DataObject) -> None:
        stack.run(probe_once(data.draw(admin_requests(list(known)))))

    probe()
    stack.check(sentinel)
    assert accepted, "the fuzz never registered a working client: it tests refusals only"

"""Key rotation in a running service (issue 4, item 5), with the service's clock: a new key is
announced in /jwks.json before it signs, takes over by itself when its `sign_at` passes, and the
old key keeps verifying the tokens it signed; a reloaded key file applies at once."""

from __future__ import annotations

import base64
import json

import pytest

from tests.harness import Clock, Harness
from tokensvc.signing.keyfile import generate_jwks, rotate_jwks
from tokensvc.signing.keys import keyset_from_jwks
from tokensvc.signing.schedule import JWKS_MAX_AGE

pytestmark = pytest.mark.asyncio


def kid_of(token: str) -> str:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


async def machine_token(harness: Harness) -> str:
    client, secret = await harness.client(
        grant_types=["client_credentials"], scope_list=["api:read"]
    )
    reply = await harness.token(client, secret, grant_type="client_credentials")
    assert reply.status == 200, reply.body
    return str(reply.body["access_token"])


async def test_new_key_is_announced_then_signs_by_itself(make_harness, clock: Clock) -> None:
    first = generate_jwks("ES256", now=clock() - 60)
    jwks, rotation = rotate_jwks(first, now=clock(), token_ttl=3600)
    old_kid, new_kid = first["keys"][0]["kid"], rotation.new.kid
    harness = await make_harness(keys=keyset_from_jwks(jwks))

    published = await harness.get("/jwks.json")
    assert published.headers["Cache-Control"] == f"public, max-age={JWKS_MAX_AGE}"
    assert [k["kid"] for k in published.body["keys"]] == [old_kid, new_kid]
    old_token = await machine_token(harness)
    assert kid_of(old_token) == old_kid  # announced, not signing yet

    clock.advance(JWKS_MAX_AGE)  # one cache lifetime later, no reload, no restart
    new_token = await machine_token(harness)
    assert kid_of(new_token) == new_kid
    await harness.verify(old_token, typ="at+jwt")
    await harness.verify(new_token, typ="at+jwt")

    clock.advance(3600 + JWKS_MAX_AGE)  # every token of the old key has expired
    published = await harness.get("/jwks.json")
    assert [k["kid"] for k in published.body["keys"]] == [new_kid]


async def test_reloaded_keys_apply_at_once(make_harness, clock: Clock) -> None:
    first = generate_jwks("ES256", now=clock() - 60)
    harness = await make_harness(keys=keyset_from_jwks(first))
    old_token = await machine_token(harness)
    jwks, rotation = rotate_jwks(first, "EdDSA", now=clock(), lead=0, token_ttl=3600)
    harness.svc.use_keys(keyset_from_jwks(jwks))  # what SIGHUP does
    published = await harness.get("/jwks.json")
    assert {k["kid"] for k in published.body["keys"]} == {kid_of(old_token), rotation.new.kid}
    new_token = await machine_token(harness)
    assert kid_of(new_token) == rotation.new.kid
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags EdDSA as deprecated (RFC 9864)
        await harness.verify(old_token, typ="at+jwt")
        await harness.verify(new_token, typ="at+jwt")

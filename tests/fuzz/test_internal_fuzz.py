"""The internal API under hostile input: `POST /internal/codes` with JSON of every shape
(fields missing, of the wrong type, huge integers, NUL bytes, deep nesting, not JSON at all)
and every kind of bearer, and `GET /internal/clients/{id}` with any id.

Never a 5xx; errors are JSON; a 401 names the Bearer scheme. A code the API accepts (201) is
one the token endpoint can redeem: it goes through both stores (Redis, then Postgres) and
comes back as tokens, so nothing the API lets in can break the exchange later."""

from __future__ import annotations

from typing import Any

from hypothesis import given

from tests.fuzz.conftest import fuzz
from tests.fuzz.expect import INTERNAL_ERRORS, INTERNAL_STATUS_OF, error_reply, json_body
from tests.fuzz.stack import Stack
from tests.fuzz.strategies import Hostile, Reply, client_paths, internal_requests, send
from tests.harness import Harness
from tests.harness import Reply as HarnessReply


async def _mint_and_redeem(
    h: Harness, stack: Stack, request: Hostile, body: dict[str, Any] | None
) -> tuple[Reply, HarnessReply | None]:
    minted = await send(h.http, h.internal_url, request)
    if minted.status != 201:
        return minted, None
    assert body is not None, minted  # only a JSON object is ever accepted
    party = next(p for p in stack.world.parties.values() if p.client_id == body["client_id"])
    code = json_body(minted)["code"]
    h.remember(code)
    verifiers = {challenge: verifier for verifier, challenge in stack.world.pkce}
    verifier = verifiers.get(body.get("code_challenge"))  # type: ignore[arg-type]
    return minted, await h.exchange(party.client, party.secret, code, verifier)


def test_internal_codes_answers_hostile_json_and_mints_only_redeemable_codes(
    token_stack: Stack,
) -> None:
    stack, h = token_stack, token_stack.harness
    sentinel = stack.plant()

    @fuzz(examples=120)
    @given(case=internal_requests(stack.world, int(h.clock())))
    def probe(case: tuple[Hostile, dict[str, Any] | None]) -> None:
        request, body = case
        minted, redeemed = stack.run(_mint_and_redeem(h, stack, request, body))
        if minted.status != 201:
            error = error_reply(
                minted, INTERNAL_ERRORS, no_store=False, statuses=INTERNAL_STATUS_OF
            )
            assert (error == "unauthorized") == (minted.status == 401), minted
            if error == "unauthorized":
                assert minted.headers["WWW-Authenticate"].startswith("Bearer"), minted
            return
        assert minted.headers["Cache-Control"] == "no-store", minted
        assert redeemed is not None
        challenge = body.get("code_challenge") if body is not None else None
        if challenge is not None and all(c != challenge for _, c in stack.world.pkce):
            # a well-formed challenge of the fuzz's own: no verifier can match it
            assert redeemed.status == 400 and redeemed.body["error"] == "invalid_grant", redeemed
            return
        assert redeemed.status == 200 and redeemed.body["token_type"] == "Bearer", (body, redeemed)

    probe()
    stack.check(sentinel)


def test_internal_clients_answers_any_id_with_json(token_stack: Stack) -> None:
    stack, h = token_stack, token_stack.harness
    known = {p.client_id for p in stack.world.parties.values()}

    @fuzz(examples=100)
    @given(path=client_paths(stack.world))
    def probe(path: str) -> None:
        reply = stack.run(
            send(
                h.http,
                h.internal_url,
                Hostile(
                    "GET", path, (("Authorization", f"Bearer {h.settings.internal_token}"),), b""
                ),
            )
        )
        if reply.status == 200:
            assert json_body(reply)["client_id"] in known, reply
        else:
            assert (
                error_reply(reply, INTERNAL_ERRORS, no_store=False, statuses=INTERNAL_STATUS_OF)
                == "not_found"
            ), reply

    probe()

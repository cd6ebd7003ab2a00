"""/metrics, read with prometheus-client's own text parser, moves as requests are made."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Harness

pytestmark = pytest.mark.asyncio


async def scrape(harness: Harness) -> dict[tuple[str, frozenset], float]:
    async with harness.http.get(harness.public_url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_counters_move(harness: Harness) -> None:
    client, secret = await harness.client()
    before = await scrape(harness)
    assert (
        value(
            before,
            "tokensvc_tokens_issued_total",
            grant_type="client_credentials",
            client_id=client.client_id,
        )
        == 0
    )

    await harness.token(client, secret, grant_type="client_credentials")
    code, verifier = await harness.mint_code(client)
    first = await harness.exchange(client, secret, code, verifier)
    await harness.exchange(client, secret, code, verifier)  # replay: revokes the grant
    code, verifier = await harness.mint_code(client)
    tokens = (await harness.exchange(client, secret, code, verifier)).body
    await asyncio.gather(
        *(
            harness.token(
                client, secret, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
            )
            for _ in range(3)
        )
    )
    await harness.post_token(
        {"grant_type": "client_credentials"}, basic=(client.client_id, "wrong")
    )
    await harness.post_token({"grant_type": "client_credentials"}, basic=("nobody", "x"))
    assert first.status == 200

    after = await scrape(harness)
    cid = client.client_id
    assert (
        value(after, "tokensvc_tokens_issued_total", grant_type="client_credentials", client_id=cid)
        == 1
    )
    assert (
        value(after, "tokensvc_tokens_issued_total", grant_type="authorization_code", client_id=cid)
        == 2
    )
    assert (
        value(after, "tokensvc_tokens_issued_total", grant_type="refresh_token", client_id=cid) == 3
    )
    assert value(after, "tokensvc_refresh_rotations_total", client_id=cid) == 1
    assert value(after, "tokensvc_refresh_grace_repeats_total", client_id=cid) == 2
    assert value(after, "tokensvc_code_replays_total", client_id=cid) == 1
    assert (
        value(after, "tokensvc_family_revocations_total", client_id=cid, reason="code_replay") == 1
    )
    assert (
        value(after, "tokensvc_oauth_errors_total", endpoint="/token", error="invalid_grant") == 1
    )
    assert (
        value(after, "tokensvc_oauth_errors_total", endpoint="/token", error="invalid_client") == 2
    )
    assert value(after, "tokensvc_invalid_client_total", client_id="unknown") == 1
    assert value(after, "tokensvc_invalid_client_total", client_id=cid) == 1
    assert (
        value(after, "tokensvc_http_requests_total", endpoint="/token", method="POST", status="200")
        == 6
    )
    assert value(after, "tokensvc_http_request_duration_seconds_count", endpoint="/token") == 9
    assert (
        value(after, "tokensvc_store_duration_seconds_count", store="codes", operation="consume")
        == 3
    )
    # Three refreshes of one token: each reads its state once; one rotation wins (in memory
    # the others see it rotated and never try), and each lost rotation re-reads the state.
    inspects, rotations = (
        value(after, "tokensvc_store_duration_seconds_count", store="grants", operation=op)
        for op in ("inspect", "rotate")
    )
    assert 1 <= rotations <= 3
    assert inspects == 3 + (rotations - 1)
    # The internal listener counts into the same registry, under its own route.
    assert (
        value(
            after,
            "tokensvc_http_requests_total",
            endpoint="/internal/codes",
            method="POST",
            status="201",
        )
        == 2
    )


async def test_batched_store_calls_count_their_round_trips(harness: Harness, backend: str) -> None:
    """`tokensvc_store_batches_total`: one per round trip a batch made, so that calls over
    batches is what batching saved (for grants.rotate, refreshes per Postgres commit)."""
    client, secret = await harness.client()
    tokens = []
    for _ in range(8):
        code, verifier = await harness.mint_code(client)
        tokens.append((await harness.exchange(client, secret, code, verifier)).body)
    before = await scrape(harness)
    answers = await asyncio.gather(
        *(
            harness.token(
                client, secret, grant_type="refresh_token", refresh_token=t["refresh_token"]
            )
            for t in tokens
        )
    )
    assert [a.status for a in answers] == [200] * 8
    after = await scrape(harness)

    def moved(name: str, op: str) -> float:
        labels = {"store": "grants", "operation": op}
        return value(after, name, **labels) - value(before, name, **labels)

    calls = moved("tokensvc_store_duration_seconds_count", "rotate")
    batches = moved("tokensvc_store_batches_total", "rotate")
    assert calls == 8
    if backend == "memory":  # nothing to batch: no round trips
        assert batches == 0
    else:
        assert 1 <= batches <= calls
        issued = value(after, "tokensvc_store_batches_total", store="grants", operation="issue")
        assert issued == 8  # the exchanges above, one at a time: a batch of one each


async def test_rate_limit_rejections_are_counted(harness: Harness) -> None:
    client, secret = await harness.client(
        grant_types=["client_credentials"], scope_list=["a"], rate_limit=0.01, rate_burst=2
    )
    statuses = [
        (await harness.token(client, secret, grant_type="client_credentials")).status
        for _ in range(4)
    ]
    assert statuses == [200, 200, 429, 429]
    samples = await scrape(harness)
    assert (
        value(samples, "tokensvc_rate_limited_total", client_id=client.client_id, limit="rate") == 2
    )


async def test_unmatched_paths_do_not_grow_the_label_set(harness: Harness) -> None:
    for i in range(5):
        async with harness.http.get(f"{harness.public_url}/random-{i}") as resp:
            assert resp.status == 404
    samples = await scrape(harness)
    paths = {dict(labels).get("endpoint") for (_, labels) in samples}
    assert not any(p and p.startswith("/random") for p in paths)
    assert (
        value(
            samples,
            "tokensvc_http_requests_total",
            endpoint="unmatched",
            method="GET",
            status="404",
        )
        == 5
    )

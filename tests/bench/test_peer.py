"""The peer in the kit (benchmarks/peer.py): node-oidc-provider installed with npm and run on
tokensvc's core, its tokens verified against its own key, every generator counting a 200 without
a JWT access token as an error, and the tokensvc/peer ratios with their targets in the table,
the JSON and the HTML; then a short spawned run of the three grants against the real peer."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from benchmarks import plot, report
from benchmarks.generators import pyload
from benchmarks.generators.common import NO_JWT, has_jwt_access_token
from benchmarks.generators.wrk import Wrk
from benchmarks.peer import TARGET_VS_PEER, Peer, phase_name, verify_tokens
from benchmarks.prepare import Client, PrepareError, client_credentials_line
from tests.bench.kit import run_kit
from tests.bench.test_resources import _phase, _report, _run
from tests.servers import free_port

OPAQUE = {"access_token": "2YotnFZFEjr1zCsicMWpAA", "token_type": "Bearer", "expires_in": 60}


def test_only_a_jwt_access_token_counts_as_served() -> None:
    assert has_jwt_access_token(b'{"access_token":"eyJh.eyJz.c2ln","token_type":"Bearer"}')
    assert has_jwt_access_token(b'{"token_type":"DPoP", "access_token" : "a-b.c_d.e"}')
    assert not has_jwt_access_token(json.dumps(OPAQUE).encode())
    assert not has_jwt_access_token(b'{"access_token":"a.b"}')
    assert not has_jwt_access_token(b'{"id_token":"a.b.c"}')


@pytest.fixture
def opaque_url() -> Iterator[str]:
    """A token endpoint answering 200 with an opaque access token, on loopback."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def token(request: web.Request) -> web.Response:
        await request.post()
        return web.json_response(OPAQUE)

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/token", token)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = loop.run_until_complete(serve())
    thread = threading.Thread(target=lambda: (started.set(), loop.run_forever()), daemon=True)
    thread.start()
    started.wait()
    try:
        yield f"http://127.0.0.1:{port}/token"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_both_generators_count_a_200_without_a_jwt_as_an_error(
    opaque_url: str, tmp_path: Path
) -> None:
    line = client_credentials_line(Client("c", "s"))
    spec = pyload.LoadSpec(opaque_url, "closed", 1.0, connections=2, processes=1)
    outcome, _ = pyload.run(spec, [line] * 20_000)
    assert outcome.completed > 0 and outcome.statuses[200] == outcome.completed
    assert outcome.errors == {NO_JWT: outcome.completed}

    wrk = Wrk(opaque_url, connections=2, threads=1, workdir=tmp_path)
    outcome = wrk.run_slice([[line]], repeat=True)
    assert outcome.statuses[200] > 0
    assert outcome.errors == {NO_JWT: outcome.statuses[200]}


def _peer_keys() -> tuple[ECKey, Peer]:
    key = ECKey.generate_key("P-256", parameters={"kid": "peer"}, private=True)
    keys = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})
    return key, Peer("a peer", "http://127.0.0.1:1/token", Client("m", "s"), keys=keys)


def test_the_peers_tokens_must_verify_against_its_key() -> None:
    key, peer = _peer_keys()
    check = verify_tokens(peer)
    header = {"alg": "ES256", "kid": "peer"}
    good = jwt.encode(header, {"sub": "m"}, key)
    check("peer_client_credentials", {"access_token": good, "id_token": good})
    stranger = ECKey.generate_key("P-256", parameters={"kid": "peer"}, private=True)
    forged = jwt.encode(header, {"sub": "m"}, stranger)
    with pytest.raises(PrepareError, match="access_token does not verify"):
        check("peer_client_credentials", {"access_token": forged})
    with pytest.raises(PrepareError, match="id_token does not verify"):
        check("peer_authorization_code", {"access_token": good, "id_token": forged})


def test_the_peer_table_json_and_page_give_the_ratio_and_its_target() -> None:
    phases = [
        _phase("client_credentials", 9_300, 2000),
        _phase(phase_name("client_credentials"), 3_000, 6000),
        _phase("authorization_code", 4_000, 4000),
        _phase(phase_name("authorization_code"), 2_500, 8000),
    ]
    data = _report(*phases, peer={"label": "node-oidc-provider 9.13.3", "targets": TARGET_VS_PEER})
    by_name = {p["name"]: p for p in data["phases"]}
    cc, code = by_name["client_credentials"], by_name["authorization_code"]
    assert cc["vs_peer"]["rps"] == 3.1 and cc["target_vs_peer"] == {
        "rps_at_least": 3.0,
        "met": True,
    }
    assert code["vs_peer"]["rps"] == 1.6 and code["target_vs_peer"]["met"] is False
    assert "vs_peer" not in by_name[phase_name("client_credentials")]
    text = report.table(data)
    assert "against the peer, closed loop, same core and concurrency: node-oidc-provider" in text
    section = text.split("against the peer")[1].split("\n\n")[0].splitlines()[2:]
    rows = {line.split()[0]: line.split() for line in section}
    assert rows["client_credentials"][1:5] == ["9,300", "3,000", "3.10", "3.00"]
    assert rows["authorization_code"][1:5] == ["4,000", "2,500", "1.60", "2.00!"]
    page = plot.page(data, text)
    assert "fraction of node-oidc-provider 9.13.3" in page and ">3.10</text>" in page


def test_the_peer_needs_a_spawned_stack_and_the_peer_url_a_client() -> None:
    result = run_kit(
        "--target",
        "http://127.0.0.1:1/token",
        "--client-id",
        "a",
        "--client-secret",
        "b",
        "--peer",
        "node-oidc-provider",
    )
    assert result.returncode == 2 and "--peer needs --spawn" in result.stderr
    result = run_kit("--spawn", "--peer-url", "http://127.0.0.1:1/token")
    assert result.returncode == 2
    assert "--peer-url needs --peer-client-id and --peer-client-secret" in result.stderr


def test_a_spawned_run_measures_node_oidc_provider_on_every_grant(
    tmp_path: Path, redis_url: str, postgres_admin_url: str
) -> None:
    data, summary = _run(
        tmp_path,
        redis_url,
        postgres_admin_url,
        "cc,code,refresh",
        "--peer",
        "node-oidc-provider",
        "--rate",
        "off",
        "--batch",
        "300",
        timeout=600,
    )
    assert data["peer"]["label"].startswith("node-oidc-provider 9.13.3 (Node v2")
    phases = {p["name"]: p for p in data["phases"]}
    for grant in ("client_credentials", "authorization_code", "refresh_token"):
        theirs = phases[phase_name(grant)]
        assert theirs["errors"]["total"] == 0, (grant, theirs["errors"])
        assert theirs["requests"] > 0 and theirs["ok"] == theirs["requests"]
        assert theirs["cpu"]["service"] > 0  # the peer's process, watched in its phase
        ours = phases[grant]
        assert ours["vs_peer"]["rps"] == pytest.approx(ours["rps"] / theirs["rps"], rel=0.01)
        assert ours["target_vs_peer"]["rps_at_least"] == TARGET_VS_PEER[grant]
    # what the peer signs: an ES256 JWT access token, and an ID token where a person is
    jwts = data["jwts_per_response"]
    assert jwts[phase_name("client_credentials")] == {"access_token": 1}
    assert jwts[phase_name("authorization_code")] == {"access_token": 1, "id_token": 1}
    assert jwts[phase_name("refresh_token")] == {"access_token": 1, "id_token": 1}
    assert "against the peer, closed loop, same core and concurrency" in summary

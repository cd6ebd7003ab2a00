"""SPEC: Tracing. `tokensvc serve token` and `tokensvc serve login` as two processes on real
Postgres and Redis, exporting over OTLP/HTTP to a receiver in the test (tests.otlp): each
request is a SERVER span named by its route template, store calls are its child spans, the
front-end's calls to the internal API carry `traceparent` so that one sign-in is one trace, the
sampler is the one `OTEL_TRACES_SAMPLER` names, and no attribute anywhere holds a secret.
With no endpoint set, tracing is not even imported."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import pytest

from tests.e2e.procs import (
    INTERNAL_TOKEN,
    Proc,
    add_machine_client,
    add_web_client,
    base_env,
    basic,
    http,
    migrated_database,
    run,
    service_env,
    wait_for,
    write_keys,
)
from tests.otlp import OtlpReceiver, ReceivedSpan
from tests.servers import free_port, run_sync

REDIS_DB = 10
PASSWORD = "correct horse battery staple"
REDIRECT = "https://app.example.com/cb"
TRACED = {"OTEL_BSP_SCHEDULE_DELAY": "50"}  # export every 50 ms, not every 5 s
TOKEN, LOGIN = "tokensvc", "tokensvc-login"  # the services' default names


@dataclass
class Stack:
    receiver: OtlpReceiver
    issuer: str
    internal: str
    login: str
    web: dict[str, Any]
    machine: dict[str, Any]
    secrets: set[str] = field(default_factory=set)  # every secret the tests handled

    def spans(self, service: str, name: str, kind: str = "server") -> list[ReceivedSpan]:
        return [s for s in self.receiver.spans(service) if s.name == name and s.kind == kind]


@pytest.fixture(scope="module")
def stack(
    postgres_admin_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("tracing")
    receiver = OtlpReceiver()
    procs: list[Proc] = []
    try:
        with migrated_database(postgres_admin_url) as db:
            env_db = base_env(TOKENSVC_DATABASE_URL=db)
            web = add_web_client(env_db, "Web", REDIRECT, "openid email offline_access")
            machine = add_machine_client(env_db)
            run(
                ["user", "add", "--username", "ada", "--password-stdin"],
                env_db,
                stdin=PASSWORD + "\n",
            ).ok()
            redis = urlunsplit(urlsplit(redis_url)._replace(path=f"/{REDIS_DB}"))
            login_port = free_port()
            tracing = {**TRACED, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
            token_env = service_env(
                write_keys(workdir),
                TOKENSVC_DATABASE_URL=db,
                TOKENSVC_REDIS_URL=redis,
                TOKENSVC_LOGIN_PORT=str(login_port),
                **tracing,
            )
            internal = f"http://127.0.0.1:{token_env['TOKENSVC_INTERNAL_PORT']}"
            login_env = base_env(
                TOKENSVC_ISSUER=token_env["TOKENSVC_ISSUER"],
                TOKENSVC_DATABASE_URL=db,
                TOKENSVC_REDIS_URL=redis,
                TOKENSVC_INTERNAL_TOKEN=INTERNAL_TOKEN,
                TOKENSVC_TOKEN_INTERNAL_URL=internal,
                TOKENSVC_HOST="127.0.0.1",
                TOKENSVC_LOGIN_PORT=str(login_port),
                TOKENSVC_LOG_FORMAT="json",
                TOKENSVC_DRAIN_SECONDS="0",
                **tracing,
            )
            procs.append(Proc(["serve", "token"], token_env, workdir, "token"))
            procs[-1].wait_http(f"{token_env['TOKENSVC_ISSUER']}/healthz")
            procs.append(Proc(["serve", "login"], login_env, workdir, "login"))
            login = f"http://127.0.0.1:{login_port}"
            procs[-1].wait_http(f"{login}/healthz")
            yield Stack(
                receiver,
                token_env["TOKENSVC_ISSUER"],
                internal,
                login,
                web,
                machine,
                {PASSWORD, INTERNAL_TOKEN, web["client_secret"], machine["client_secret"]},
            )
    finally:
        for proc in procs:
            proc.kill()
        receiver.close()


async def _sign_in(stack: Stack) -> str:
    """A person signs in at the front-end (GET /authorize, POST /login): the code it got."""
    params = {
        "response_type": "code",
        "client_id": stack.web["client_id"],
        "redirect_uri": REDIRECT,
        "scope": "openid email offline_access",
        "state": "state-1",
        "prompt": "consent",
    }
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
        async with browser.get(f"{stack.login}/authorize", params=params) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.text()
            cookies = [c.split(";")[0] for c in resp.headers.getall("Set-Cookie")]
        form = dict(re.findall(r'name="(interaction|csrf)" value="([^"]*)"', page))
        while True:  # the sign-in form, then the consent screen when one is asked for
            path = "/consent" if "decision" in page else "/login"
            data = {**form, "decision": "allow"} if path == "/consent" else form
            if path == "/login":
                data = {**form, "username": "ada", "password": PASSWORD}
            async with browser.post(
                stack.login + path,
                data=data,
                allow_redirects=False,
                headers={"Cookie": "; ".join(cookies)},
            ) as resp:
                cookies += [c.split(";")[0] for c in resp.headers.getall("Set-Cookie", [])]
                if resp.status == 302:
                    location = resp.headers["Location"]
                    break
                assert resp.status == 200, await resp.text()
                page = await resp.text()
                form = dict(re.findall(r'name="(interaction|csrf)" value="([^"]*)"', page))
    stack.secrets.update(value.split("=", 1)[1] for value in cookies)
    stack.secrets.update(form.values())
    (code,) = parse_qs(urlsplit(location).query)["code"]
    stack.secrets.add(code)
    return code


@pytest.fixture(scope="module")
def signed_in(stack: Stack) -> dict[str, Any]:
    """One sign-in, its code redeemed and its refresh token used: the tokens the tests got."""
    code = run_sync(lambda: _sign_in(stack))
    web = basic(stack.web["client_id"], stack.web["client_secret"])
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    tokens = http(f"{stack.issuer}/token", data=form, headers=web).json()
    refreshed = http(
        f"{stack.issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=web,
    ).json()
    for reply in (tokens, refreshed):
        stack.secrets.update(reply[k] for k in ("access_token", "refresh_token", "id_token"))
    return {"code": code, **tokens}


def children(stack: Stack, parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in stack.receiver.spans() if s.parent_id == parent.span_id]


def test_one_sign_in_is_one_trace_across_both_services(
    stack: Stack, signed_in: dict[str, Any]
) -> None:
    """POST /login at the front-end -> its CLIENT span for POST /internal/codes -> the token
    service's SERVER span for it (through `traceparent`) -> the Redis call storing the code."""

    def minting(_: object) -> list[tuple[ReceivedSpan, ReceivedSpan]]:
        pages = stack.spans(LOGIN, "POST /login") + stack.spans(LOGIN, "POST /consent")
        return [
            (page, call)
            for page in pages
            for call in children(stack, page)
            if call.name == "POST /internal/codes"
        ]

    # the sign-in form's POST, or the consent screen's when offline_access asks for consent
    ((sign_in, outgoing),) = stack.receiver.wait_for(minting, "front-end span minting a code")
    assert outgoing.kind == "client" and outgoing.service == LOGIN
    minted = stack.receiver.wait_for(
        lambda _: [s for s in children(stack, outgoing) if s.service == TOKEN],
        "token-service span continuing the front-end's trace",
    )
    (mint,) = minted
    assert (mint.name, mint.kind, mint.trace_id) == (
        "POST /internal/codes",
        "server",
        sign_in.trace_id,
    )
    assert mint.attributes["http.response.status_code"] == 201
    stored = stack.receiver.wait_for(
        lambda _: [s for s in children(stack, mint) if s.name == "codes.put"], "codes.put span"
    )
    assert stored[0].attributes["db.system.name"] == "redis"
    assert stored[0].trace_id == sign_in.trace_id
    # the front-end's own store calls are spans of the same trace (users in Postgres)
    assert any(s.attributes.get("db.system.name") == "postgresql" for s in children(stack, sign_in))


def test_store_calls_are_child_spans_of_the_request(
    stack: Stack, signed_in: dict[str, Any]
) -> None:
    """The code exchange: the code consumed in Redis and the grant written to Postgres are
    CLIENT spans under the request's SERVER span, in its trace."""

    def exchange(_: object) -> list[tuple[ReceivedSpan, list[ReceivedSpan]]]:
        found = []
        for span in stack.spans(TOKEN, "POST /token"):
            kids = children(stack, span)
            if any(k.name == "codes.consume" for k in kids):
                found.append((span, kids))
        return found

    ((request, kids),) = stack.receiver.wait_for(exchange, "code exchange with its store calls")
    assert request.parent_id == ""  # a root: the caller sent no traceparent
    assert request.attributes == {
        "http.request.method": "POST",
        "http.route": "/token",
        "http.response.status_code": 200,
    }
    systems = {k.attributes["db.system.name"] for k in kids}
    assert {"redis", "postgresql"} <= systems
    for kid in kids:
        assert kid.kind == "client" and kid.trace_id == request.trace_id
        assert (
            kid.name == f"{kid.attributes['tokensvc.store']}.{kid.attributes['db.operation.name']}"
        )


def test_spans_are_named_by_route_templates_never_raw_paths(stack: Stack) -> None:
    client_id = stack.machine["client_id"]
    bearer = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    assert http(f"{stack.internal}/internal/clients/{client_id}", headers=bearer).status == 200
    assert http(f"{stack.issuer}/no/such/path-{client_id}?x=1").status == 404
    cc = http(
        f"{stack.issuer}/token",
        data={"grant_type": "client_credentials"},
        headers=basic(client_id, stack.machine["client_secret"]),
    )
    assert cc.status == 200
    stack.secrets.add(cc.json()["access_token"])
    (lookup,) = stack.receiver.wait_for(  # the test's own (the front-end's have parents)
        lambda _: [
            s for s in stack.spans(TOKEN, "GET /internal/clients/{client_id}") if s.parent_id == ""
        ],
        "client lookup span",
    )
    assert lookup.attributes["http.route"] == "/internal/clients/{client_id}"
    (unmatched,) = stack.receiver.wait_for(
        lambda _: [s for s in stack.spans(TOKEN, "GET") if s.attributes["http.route"] == ""],
        "span of an unmatched path",
    )
    assert unmatched.attributes["http.response.status_code"] == 404
    # the path as sent is nowhere: neither the id in it nor the query
    for span in stack.receiver.spans(TOKEN):
        if span.kind == "server":
            assert not any(client_id in s or "x=1" in s for s in span.strings()), span


def test_no_attribute_holds_a_secret_code_or_token(stack: Stack, signed_in: dict[str, Any]) -> None:
    """Every string the receiver got (span names, attributes, events, status messages,
    resources) against every secret the tests handled: passwords, client secrets, the
    internal token, cookies, CSRF values, the code, access, refresh and ID tokens."""
    spans = stack.receiver.wait_for(
        lambda spans: len(spans) > 10 and spans, "the spans of the sign-in and exchanges"
    )
    assert signed_in["code"] in stack.secrets and len(stack.secrets) > 10
    strings = [s for span in spans for s in span.strings()]
    assert "POST /token" in strings  # the scan reads what the spans carry
    leaks = {secret for secret in stack.secrets for s in strings if secret and secret in s}
    assert not leaks


# What tracing imports: tokensvc's side, the SDK's tracer and the exporter. (redis-py 8 imports
# OpenTelemetry's metrics API and parts of the SDK when they are installed, for metrics of its
# own that record nothing unless an application turns them on; that is not tracing.)
TRACING = ("tokensvc.tracing.otel", "opentelemetry.sdk.trace", "opentelemetry.exporter")
# `tokensvc serve token` that prints, as it exits, the tracing modules it imported.
SERVE_AND_LIST = f"""
import atexit, json, sys
atexit.register(lambda: print(json.dumps(
    sorted(m for m in sys.modules if m.startswith({TRACING!r}))
)))
from tokensvc.cli import main
sys.exit(main(["serve", "token"]))
"""


def _imported(workdir: Path, **settings: str) -> list[str]:
    """Serve a few requests (a refused `/token` included) with `settings`, stop, and list the
    tracing modules the process imported."""
    env = service_env(write_keys(workdir), TOKENSVC_DRAIN_SECONDS="0", **settings)
    issuer = env["TOKENSVC_ISSUER"]
    with subprocess.Popen(
        [sys.executable, "-c", SERVE_AND_LIST],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            wait_for(lambda: _answers(f"{issuer}/healthz"), 20, "the service to start")
            refused = http(f"{issuer}/token", data={"grant_type": "client_credentials"})
            assert refused.status == 401
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    modules: list[str] = json.loads(out.strip().splitlines()[-1])
    return modules


def _answers(url: str) -> bool:
    try:
        return http(url, timeout=1).status == 200
    except OSError:
        return False


def test_without_an_endpoint_tracing_is_not_even_imported(tmp_path: Path) -> None:
    """Tracing off is free: no import, hence no middleware and no wrapped store call. The
    same process with an endpoint set does import it, so the check can fail."""
    assert _imported(tmp_path) == []
    receiver = OtlpReceiver()
    try:
        traced = _imported(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
        assert {"tokensvc.tracing.otel", "opentelemetry.sdk.trace"} <= set(traced)
        assert "POST /token" in {s.name for s in receiver.spans()}  # flushed at shutdown
    finally:
        receiver.close()


def _sampling(
    workdir: Path, receiver: OtlpReceiver, name: str, sampler: str, arg: str = ""
) -> tuple[Proc, dict[str, str]]:
    """`serve token` named `name`, exporting to `receiver` with `sampler` (and its argument)."""
    env = service_env(
        write_keys(workdir),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_TRACES_SAMPLER=sampler,
        OTEL_SERVICE_NAME=name,
        TOKENSVC_DRAIN_SECONDS="0",
    )
    if arg:
        env["OTEL_TRACES_SAMPLER_ARG"] = arg
    return Proc(["serve", "token"], env, workdir, name), env


def test_the_sampler_is_the_one_the_environment_names(tmp_path: Path) -> None:
    """OTEL_TRACES_SAMPLER=parentbased_always_off: a request on its own is not traced, one
    whose caller sampled its trace (`traceparent` flags 01) is, in the caller's trace; every
    span queued is exported when the service stops."""
    receiver = OtlpReceiver()
    proc, env = _sampling(tmp_path, receiver, "sampler-test", "parentbased_always_off")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        proc.wait_http(f"{env['TOKENSVC_ISSUER']}/healthz")
        assert http(f"{env['TOKENSVC_ISSUER']}/jwks.json").status == 200
        sampled = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        assert http(f"{env['TOKENSVC_ISSUER']}/jwks.json", headers=sampled).status == 200
        unsampled = {"traceparent": f"00-{'1' * 32}-00f067aa0ba902b7-00"}
        assert http(f"{env['TOKENSVC_ISSUER']}/jwks.json", headers=unsampled).status == 200
        assert proc.stop(signal.SIGTERM) == 0
        spans = receiver.spans("sampler-test")
        assert [(s.name, s.trace_id, s.parent_id) for s in spans] == [
            ("GET /jwks.json", trace_id, "00f067aa0ba902b7")
        ]
    finally:
        proc.kill()
        receiver.close()


def test_a_ratio_sampler_keeps_its_share_of_new_traces(tmp_path: Path) -> None:
    """parentbased_traceidratio 0.5: about half of 300 requests that start a trace are
    exported, each a trace of its own (the middleware asks the sampler before making a span,
    and the span it makes carries the trace id the sampler kept)."""
    receiver = OtlpReceiver()
    proc, env = _sampling(tmp_path, receiver, "ratio-test", "parentbased_traceidratio", "0.5")
    try:
        proc.wait_http(f"{env['TOKENSVC_ISSUER']}/healthz")
        for _ in range(300):
            assert http(f"{env['TOKENSVC_ISSUER']}/jwks.json").status == 200
        assert proc.stop(signal.SIGTERM) == 0
        spans = [s for s in receiver.spans("ratio-test") if s.name == "GET /jwks.json"]
        assert 100 <= len(spans) <= 200, len(spans)
        assert len({s.trace_id for s in spans}) == len(spans)
        assert all(s.parent_id == "" and int(s.trace_id, 16) for s in spans)
    finally:
        proc.kill()
        receiver.close()

"""A load of code exchanges and refreshes against a real `tokensvc serve token` process, and a
ledger of every answer, for the fault tests: something is killed mid-load, and the ledger then
shows what the clients saw.

The load makes what a fault must never cause visible:

* every code is sent by two racers at once, and both re-send it after a 503 or a broken
  connection until one gets a definite answer: a code answered 200 twice was exchanged twice;
* every refresh token is sent the same way, and its successor then takes its place (one chain
  per worker). The grace window (`GRACE`) outlasts every outage here, so each re-sent token is
  a repeat, never reuse: every 200 for one token must carry the very same response (one
  successor), and the newest token of each chain must still refresh afterwards (a 200 means
  the rotation was committed).

A code's second racer finds it used, which revokes what the first exchange issued (RFC 6749
§4.1.2), so the racers' refresh tokens are dead by design; the chains start from codes
exchanged once, before any fault.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.e2e.procs import (
    INTERNAL_TOKEN,
    Proc,
    add_web_client,
    base_env,
    basic,
    service_env,
    write_keys,
)
from tests.harness import pkce_pair

GRACE = 60  # TOKENSVC_REFRESH_GRACE, seconds: longer than any outage of these tests
RECOVERY = 5.0  # seconds from a dependency accepting connections to the service serving
POLL = 0.05  # seconds between recovery probes
PAUSE = 0.05  # seconds before re-sending after a 503 or a broken connection
REQUEST_TIMEOUT = 15.0  # a request still unanswered then counts as a hang
STOP_TIMEOUT = 20.0  # seconds for the workers to finish their last requests
AHEAD = 32  # codes minted ahead of the exchangers
REDIRECT_URI = "https://app.example.com/cb"
SCOPE = "openid api:read"
_WORDS = re.compile(rb"[A-Za-z0-9_-]{20,}")  # where a code or token could show in a log


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer, the connection failed (`failure` says how)
    body: Any = None
    retry_after: str | None = None
    failure: str = ""
    took: float = 0.0  # seconds the client waited for the answer

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None

    @property
    def settled(self) -> bool:
        """A definite answer: anything but a 503 or a failed connection."""
        return self.status not in (503, None)

    @property
    def unavailable(self) -> bool:
        """The one 5xx a store outage may cause: 503 temporarily_unavailable, Retry-After."""
        return (
            self.status == 503
            and self.error == "temporarily_unavailable"
            and bool(self.retry_after)
        )


@dataclass
class Ledger:
    """Every answer of a run, by what was presented."""

    mints: list[Answer] = field(default_factory=list)
    codes: dict[str, list[Answer]] = field(default_factory=dict)
    refreshes: dict[str, list[Answer]] = field(default_factory=dict)
    # refresh tokens handed out that must stay live: the chains' (not the racers' codes')
    issued: dict[str, None] = field(default_factory=dict)

    def surprises(self, *, broken_connections: bool = False) -> list[tuple[str, Answer]]:
        """Answers no fault may cause: any 5xx but a proper 503, a refused refresh (the grace
        outlasts the outage), and failed connections unless the service itself was killed."""

        def fine(answer: Answer, ok: int, refused: bool = False) -> bool:
            return (
                answer.status == ok
                or answer.unavailable
                or (refused and answer.status == 400 and answer.error == "invalid_grant")
                or (broken_connections and answer.status is None)
            )

        out = [("mint", a) for a in self.mints if not fine(a, 201)]
        out += [
            ("code", a)
            for answers in self.codes.values()
            for a in answers
            if not fine(a, 200, refused=True)
        ]
        out += [
            ("refresh", a)
            for answers in self.refreshes.values()
            for a in answers
            if not fine(a, 200)
        ]
        return out

    def exchanged_twice(self) -> list[str]:
        return [
            code
            for code, answers in self.codes.items()
            if sum(a.status == 200 for a in answers) > 1
        ]

    def forked(self) -> list[str]:
        """Refresh tokens whose 200 answers differ: more than one successor."""
        return [
            token
            for token, answers in self.refreshes.items()
            if len({orjson.dumps(a.body) for a in answers if a.status == 200}) > 1
        ]

    def newest(self) -> list[str]:
        """Refresh tokens handed out with a 200 that have not got a 200 themselves yet."""
        return [
            token
            for token in self.issued
            if not any(a.status == 200 for a in self.refreshes.get(token, ()))
        ]

    def count(self, kind: str, status: int | None) -> int:
        book: dict[str, list[Answer]] = getattr(self, kind)
        return sum(a.status == status for answers in book.values() for a in answers)


class Service:
    """`tokensvc serve token` on the given stores as a subprocess (its own process group), with
    a client registered for codes and refreshes."""

    def __init__(self, database_url: str, redis_url: str, workdir: Path) -> None:
        db_env = base_env(TOKENSVC_DATABASE_URL=database_url)
        self.client = add_web_client(db_env, "Faults", REDIRECT_URI, SCOPE)
        keys_file = write_keys(workdir)
        self.env = service_env(
            keys_file,
            TOKENSVC_DATABASE_URL=database_url,
            TOKENSVC_REDIS_URL=redis_url,
            TOKENSVC_REFRESH_GRACE=str(GRACE),
            TOKENSVC_CODE_TTL="300",
            TOKENSVC_DRAIN_SECONDS="0",
        )
        self.workdir = workdir
        self.base = self.env["TOKENSVC_ISSUER"]
        self.internal = f"http://127.0.0.1:{self.env['TOKENSVC_INTERNAL_PORT']}"
        self.auth = basic(self.client["client_id"], self.client["client_secret"])
        self.runs: list[Proc] = []

    async def start(self) -> float:
        """Spawn the process; returns when it was spawned (monotonic), once it answers."""
        spawned = time.monotonic()
        proc = Proc(["serve", "token"], self.env, self.workdir)
        self.runs.append(proc)
        await asyncio.to_thread(proc.wait_http, f"{self.base}/healthz")
        return spawned

    async def kill(self) -> None:
        """SIGKILL the process group: no drain, no answer to anything in flight."""
        await asyncio.to_thread(self.runs[-1].kill)

    def stop(self) -> None:
        for proc in self.runs:
            proc.kill()

    def assert_logs_clean(self, secrets: set[bytes]) -> None:
        """No traceback, no unhandled error, no 500, and no code or token in any log line."""
        for proc in self.runs:
            stderr = proc.stderr_path.read_bytes()
            stdout = proc.stdout_path.read_bytes()
            assert b"Traceback" not in stderr + stdout, stderr.decode(errors="replace")[-3000:]
            events = proc.events()
            assert not [e for e in events if e.get("event") == "unhandled"]
            assert not [e for e in events if e.get("status", 0) >= 500 and e["status"] != 503]
            leaked = secrets & set(_WORDS.findall(stdout + stderr))
            assert not leaked, "a code or token reached a log line"


class Load:
    """Exchangers, chains and minters driving one service; every answer goes to `ledger`."""

    def __init__(self, service: Service, http: aiohttp.ClientSession) -> None:
        self.service = service
        self.http = http
        self.ledger = Ledger()
        self.verifiers: dict[str, str] = {}
        self.fresh: asyncio.Queue[str] = asyncio.Queue()
        self.stopping = asyncio.Event()

    # ----------------------------------------------------------------------- requests

    async def _call(self, url: str, method: str = "POST", **kwargs: Any) -> Answer:
        sent = time.monotonic()
        try:
            async with self.http.request(
                method, url, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT), **kwargs
            ) as resp:
                raw = await resp.read()
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    body = raw.decode(errors="replace")
                return Answer(
                    resp.status, body, resp.headers.get("Retry-After"), took=time.monotonic() - sent
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(None, failure=type(exc).__name__, took=time.monotonic() - sent)

    async def mint(self) -> str | None:
        """A fresh code (PKCE S256) from the internal API, or None when it was refused."""
        verifier, challenge = pkce_pair()
        answer = await self._call(
            f"{self.service.internal}/internal/codes",
            json={
                "client_id": self.service.client["client_id"],
                "redirect_uri": REDIRECT_URI,
                "scope": SCOPE,
                "sub": "user-1",
                "auth_time": int(time.time()),
                "nonce": "n-1",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
            headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
        )
        self.ledger.mints.append(answer)
        if answer.status != 201:
            return None
        code: str = answer.body["code"]
        self.verifiers[code] = verifier
        return code

    async def exchange(self, code: str) -> Answer:
        answer = await self._call(
            f"{self.service.base}/token",
            headers=self.service.auth,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": self.verifiers[code],
                "redirect_uri": REDIRECT_URI,
            },
        )
        self.ledger.codes.setdefault(code, []).append(answer)
        return answer

    async def refresh(self, token: str) -> Answer:
        answer = await self._call(
            f"{self.service.base}/token",
            headers=self.service.auth,
            data={"grant_type": "refresh_token", "refresh_token": token},
        )
        self.ledger.refreshes.setdefault(token, []).append(answer)
        if answer.status == 200:
            self.ledger.issued.setdefault(answer.body["refresh_token"])
        return answer

    async def first_tokens(self, n: int) -> list[str]:
        """Refresh tokens from n codes exchanged once each, before any fault."""
        tokens = []
        for _ in range(n):
            code = await self.mint()
            assert code is not None, self.ledger.mints[-1]
            answer = await self.exchange(code)
            assert answer.status == 200, answer
            tokens.append(answer.body["refresh_token"])
            self.ledger.issued.setdefault(tokens[-1])
        return tokens

    # ----------------------------------------------------------------------- workers

    async def _settle(
        self, send: Callable[[str], Awaitable[Answer]], presented: str
    ) -> list[Answer]:
        """Two racers at once, again after a pause while neither got a definite answer."""
        while True:
            answers = await asyncio.gather(send(presented), send(presented))
            if any(a.settled for a in answers) or self.stopping.is_set():
                return list(answers)
            await asyncio.sleep(PAUSE)

    async def _minter(self) -> None:
        while not self.stopping.is_set():
            if self.fresh.qsize() >= AHEAD:
                await asyncio.sleep(0.01)
            elif (code := await self.mint()) is None:
                await asyncio.sleep(PAUSE)
            else:
                self.fresh.put_nowait(code)

    async def _exchanger(self) -> None:
        while not self.stopping.is_set():
            try:
                code = await asyncio.wait_for(self.fresh.get(), 0.1)
            except TimeoutError:
                continue
            await self._settle(self.exchange, code)

    async def _chain(self, token: str) -> None:
        while not self.stopping.is_set():
            answers = await self._settle(self.refresh, token)
            served = [a for a in answers if a.status == 200]
            if served:
                token = served[0].body["refresh_token"]
            elif any(a.settled for a in answers):
                return  # refused: `Ledger.surprises` reports it

    @asynccontextmanager
    async def running(
        self, *, exchangers: int = 0, chains: Sequence[str] = ()
    ) -> AsyncIterator[None]:
        """The load runs while the block runs; leaving it stops the load and waits for it."""
        tasks = [asyncio.create_task(self._exchanger()) for _ in range(exchangers)]
        if exchangers:
            tasks += [asyncio.create_task(self._minter()) for _ in range(2)]
        tasks += [asyncio.create_task(self._chain(token)) for token in chains]
        try:
            yield
        finally:
            self.stopping.set()
            done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in done:  # a worker that crashed is a test failure, not a quiet stop
            task.result()
        assert not pending, f"{len(pending)} workers still busy {STOP_TIMEOUT}s after the stop"

    # ----------------------------------------------------------------------- checks

    def secrets(self) -> set[bytes]:
        """What no log line may hold: codes, verifiers, refresh tokens, the client secret."""
        ledger = self.ledger
        values = (
            *ledger.codes,
            *self.verifiers.values(),
            *ledger.refreshes,
            *ledger.issued,
            self.service.client["client_secret"],
        )
        return {value.encode() for value in values}

    async def fresh_code_exchanged(self) -> bool:
        """A recovery probe: a code minted now is exchanged (sent once)."""
        code = await self.mint()
        return code is not None and (await self.exchange(code)).status == 200

    async def serving(self) -> bool:
        """A recovery probe for a restarted service: ready, and a fresh code is exchanged."""
        ready = await self._call(f"{self.service.base}/readyz", "GET")
        return ready.status == 200 and await self.fresh_code_exchanged()

    def refresh_probe(self, token: str) -> Callable[[], Awaitable[bool]]:
        """A recovery probe: the next refresh of a chain of its own (each token sent once,
        re-sent after a 503 within the grace)."""
        current = token

        async def probe() -> bool:
            nonlocal current
            answer = await self.refresh(current)
            if answer.status == 200:
                current = answer.body["refresh_token"]
            return answer.status == 200

        return probe

    def assert_sound(self, *, broken_connections: bool = False) -> None:
        """What the clients saw breaks no promise (see the module docstring)."""
        surprises = self.ledger.surprises(broken_connections=broken_connections)
        assert not surprises, surprises[:5]
        assert not self.ledger.exchanged_twice(), "a code was exchanged twice"
        assert not self.ledger.forked(), "one refresh token got two different successors"

    async def assert_durable(self) -> int:
        """Every refresh token a 200 handed out (and not yet used) still refreshes."""
        newest = self.ledger.newest()
        answers = await asyncio.gather(*(self.refresh(token) for token in newest))
        refused = [a for a in answers if a.status != 200]
        assert not refused, (
            f"{len(refused)} of {len(newest)} acknowledged tokens lost: {refused[:3]}"
        )
        return len(newest)


async def recovery(probe: Callable[[], Awaitable[bool]], since: float, what: str) -> float:
    """Seconds from `since` (monotonic) until `probe()` first holds, polling every POLL; fails
    once RECOVERY has passed."""
    try:
        async with asyncio.timeout(max(0.0, since + RECOVERY - time.monotonic())):
            while True:
                if await probe():
                    break
                await asyncio.sleep(POLL)
    except TimeoutError:
        pytest.fail(f"{what}: not recovered within {RECOVERY}s")
    return time.monotonic() - since

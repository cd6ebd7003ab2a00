"""The work a run needs, prepared before anything is timed: clients, authorization codes and
refresh tokens (and client assertions: benchmarks/assertions.py; the clients of a registered API:
benchmarks/resources.py), each handed to exactly one request.

* Clients are registered with `tokensvc client add` against the target's database (when we
  spawned the stack or were given `--database-url`), or taken from the command line.
* Codes are minted like the login front-end mints them: `POST /internal/codes` with the
  internal bearer, PKCE S256, a nonce and user claims.
* Refresh tokens come from exchanging such codes at `/token` (authorization_code grant).

A request line is `(basic, body)`: the Base64 `client_id:secret` for HTTP Basic (empty for
`client_secret_post`, whose credentials are in the body) and the form body; `cc_dpop`'s lines
carry a third field, the `DPoP` header's proof (benchmarks/dpop.py). Pools hand lines out
once; lines a run did not send go back to the pool.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import secrets
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

FormLine = tuple[str, str]  # (basic, body): what a client's own credentials make
# ... or (basic, body, DPoP proof): every generator sends the third as a header
Line = FormLine | tuple[str, str, str]
GRANTS = ("client_credentials", "authorization_code", "refresh_token")
# client_credentials by clients without a secret (benchmarks/assertions.py), each measured
# against `client_credentials` itself, the client-secret baseline
CLIENT_AUTH = ("cc_federated_jwt", "cc_private_key_jwt")
# requests for a registered API (benchmarks/resources.py), also against `client_credentials`
FOR_RESOURCE = ("cc_resource", "token_exchange")
# client_credentials with a fresh DPoP proof per request (benchmarks/dpop.py), against
# `client_credentials` too; the machine client's, so nothing to register
DPOP = ("cc_dpop",)
# client_credentials at a second spawned tokensvc with tracing on (1% of traces sampled,
# exported over OTLP/HTTP to a receiver in the kit), against `client_credentials` at the
# untraced one in the same run; --spawn only
TRACED = ("cc_traced",)
# workloads whose clients the kit registers: --spawn, or --target with --database-url
# client_credentials by a `--reuse-access-token` client (the opt-in machine-token cache): after
# its first request, the token comes from the cache. Against `client_credentials`; never a target.
REUSED = ("cc_reused",)
REGISTERED = (*CLIENT_AUTH, *FOR_RESOURCE, *REUSED)
# selectable with --grants, not in the default run (RFC 8693 is not in the service yet)
OPT_IN: tuple[str, ...] = ()  # workloads left out of the default run (none today)
PERSON_SCOPE = "openid profile email offline_access"
REDIRECT_URI = "https://bench.example/cb"
PREP_CONCURRENCY = 32


class PrepareError(RuntimeError):
    """Preparation failed; the message says what the target answered."""


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    auth_method: str = "basic"  # or "post" (client_secret_post)
    redirect_uri: str = REDIRECT_URI

    def basic(self) -> str:
        if self.auth_method != "basic":
            return ""
        # RFC 6749 §2.3.1: form-encode id and secret before Base64
        raw = f"{quote(self.client_id, safe='')}:{quote(self.secret, safe='')}"
        return base64.b64encode(raw.encode()).decode()

    def body_credentials(self) -> str:
        if self.auth_method != "post":
            return ""
        return "&" + urlencode({"client_id": self.client_id, "client_secret": self.secret})

    def line(self, params: dict[str, str]) -> FormLine:
        return self.basic(), urlencode(params) + self.body_credentials()


# --------------------------------------------------------------------------- clients


def tokensvc_command() -> list[str]:
    script = Path(sys.executable).with_name("tokensvc")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "tokensvc"]


def base_env() -> dict[str, str]:
    """This process's environment without tokensvc's settings nor OpenTelemetry's (the
    caller sets its own)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOKENSVC_", "PROMETHEUS_MULTIPROC_DIR", "OTEL_"))
    }


def run_tokensvc(
    args: list[str],
    env: dict[str, str],
    *,
    timeout: float,
    error: type[RuntimeError],
    what: str = "",
) -> str:
    """`tokensvc ARGS` with `env`: its output, or `error` with its error output."""
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [*tokensvc_command(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise error(f"tokensvc {what or ' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def tokensvc_env(database_url: str) -> dict[str, str]:
    """The environment of a `tokensvc` command against the target's database."""
    return {**base_env(), "TOKENSVC_DATABASE_URL": database_url}


def add_client(database_url: str, *args: str) -> dict[str, Any]:
    """`tokensvc client add ARGS`: the registered client (with its secret, if it has one)."""
    stdout = run_tokensvc(
        ["client", "add", *args],
        tokensvc_env(database_url),
        timeout=60,
        error=PrepareError,
        what="client add",
    )
    out: dict[str, Any] = json.loads(stdout)
    return out


def register_clients(database_url: str) -> tuple[Client, Client]:
    """A machine client (client_credentials) and a web client (code + refresh)."""
    machine = add_client(
        database_url,
        "--name",
        "bench-machine",
        "--grant-type",
        "client_credentials",
        "--scope",
        "api:read",
    )
    web = add_client(
        database_url,
        "--name",
        "bench-web",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--redirect-uri",
        REDIRECT_URI,
        "--scope",
        PERSON_SCOPE,
    )
    return (
        Client(machine["client_id"], machine["client_secret"]),
        Client(web["client_id"], web["client_secret"]),
    )


def register_reusing_client(database_url: str) -> Client:
    """A client_credentials client with `--reuse-access-token` (workload cc_reused)."""
    reusing = add_client(
        database_url,
        "--name",
        "bench-reusing",
        "--grant-type",
        "client_credentials",
        "--scope",
        "api:read",
        "--reuse-access-token",
    )
    return Client(reusing["client_id"], reusing["client_secret"])


# --------------------------------------------------------------------------- lines


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def client_credentials_line(client: Client, extra: dict[str, str] | None = None) -> FormLine:
    return client.line({"grant_type": "client_credentials", **(extra or {})})


def floor_line() -> FormLine:
    """Shaped like an authorization_code request (the largest body we send), never consumed."""
    fake = Client("floor-client", secrets.token_urlsafe(32))
    verifier, _ = pkce_pair()
    return fake.line(
        {
            "grant_type": "authorization_code",
            "code": secrets.token_urlsafe(32),
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
    )


@dataclass
class Issuer:
    """Where codes are minted and exchanged."""

    token_url: str
    internal_url: str | None = None
    internal_token: str | None = None
    code_ttl: int | None = None  # seen in the first mint answer
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)  # grant -> a 200 body

    async def mint_codes(
        self, client: Client, n: int, http: aiohttp.ClientSession | None = None
    ) -> list[tuple[str, str]]:
        """n fresh codes with their PKCE verifiers (over `http` when given: a caller minting
        all along keeps its connections)."""
        if not self.internal_url or not self.internal_token:
            raise PrepareError("minting codes needs --internal-url and --internal-token")
        url = self.internal_url.rstrip("/") + "/internal/codes"
        headers = {"Authorization": f"Bearer {self.internal_token}"}
        out: list[tuple[str, str]] = []

        async def one(http: aiohttp.ClientSession, i: int) -> None:
            verifier, challenge = pkce_pair()
            body = {
                "client_id": client.client_id,
                "redirect_uri": client.redirect_uri,
                "scope": PERSON_SCOPE,
                "sub": f"bench-user-{secrets.token_hex(6)}",
                "auth_time": int(time.time()) - 5,
                "nonce": secrets.token_urlsafe(12),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "amr": ["pwd"],
                "sid": secrets.token_hex(8),
                "claims": {
                    "email": "bench@example.com",
                    "email_verified": True,
                    "name": "Bench User",
                },
            }
            async with http.post(url, json=body, headers=headers) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 201:
                    raise PrepareError(f"POST /internal/codes answered {resp.status}: {data}")
                self.code_ttl = data.get("expires_in", self.code_ttl)
                out.append((data["code"], verifier))

        await _bounded(n, one, http)
        return out

    async def exchange(self, client: Client, codes: Sequence[tuple[str, str]]) -> list[str]:
        """Refresh tokens from exchanging `codes` (each used once)."""
        tokens: list[str] = []

        async def one(http: aiohttp.ClientSession, i: int) -> None:
            code, verifier = codes[i]
            auth, body = code_line(client, code, verifier)
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if auth:
                headers["Authorization"] = f"Basic {auth}"
            async with http.post(self.token_url, data=body.encode(), headers=headers) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200 or "refresh_token" not in data:
                    raise PrepareError(f"exchanging a code answered {resp.status}: {_safe(data)}")
                self.samples.setdefault("authorization_code", data)
                tokens.append(data["refresh_token"])

        await _bounded(len(codes), one)
        return tokens

    async def sample(self, grant: str, line: Line) -> dict[str, Any]:
        """Send one request (its credential is spent) and keep the 200 body."""
        auth, body, *dpop = line
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if auth:
            headers["Authorization"] = f"Basic {auth}"
        if dpop:
            headers["DPoP"] = dpop[0]
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.token_url, data=body.encode(), headers=headers) as resp,
        ):
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise PrepareError(f"{grant}: the target answered {resp.status}: {_safe(data)}")
            if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
                raise PrepareError(f"{grant}: the target's 200 carries no access_token")
            self.samples[grant] = data
            return dict(data)


def code_pools(
    issuer: Issuer,
    client: Client,
    announce: Callable[[str, int, float], None],
    max_age: Callable[[int | None], float | None],
    prefix: str = "",
) -> dict[str, Pool]:
    """Pools of `prefix`authorization_code (codes minted at `issuer`, sent within `max_age` of
    its code TTL) and `prefix`refresh_token (refresh tokens from exchanging such codes)."""

    def codes(n: int) -> list[Line]:
        minted = asyncio.run(issuer.mint_codes(client, n))
        return [code_line(client, code, verifier) for code, verifier in minted]

    def refresh_tokens(n: int) -> list[Line]:
        async def both() -> list[str]:
            minted = await issuer.mint_codes(client, n)
            return await issuer.exchange(client, minted)

        return [refresh_line(client, token) for token in asyncio.run(both())]

    code, refresh = prefix + "authorization_code", prefix + "refresh_token"
    return {
        code: PreparedPool(code, codes, announce, max_age=lambda: max_age(issuer.code_ttl)),
        refresh: PreparedPool(refresh, refresh_tokens, announce),
    }


def code_line(client: Client, code: str, verifier: str) -> FormLine:
    return client.line(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uri,
            "code_verifier": verifier,
        }
    )


def refresh_line(client: Client, token: str) -> FormLine:
    return client.line({"grant_type": "refresh_token", "refresh_token": token})


def _safe(data: Any) -> Any:
    """An error body without anything that looks like a credential."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k in ("error", "error_description")}
    return str(data)[:200]


async def _bounded(
    n: int,
    one: Callable[[aiohttp.ClientSession, int], Any],
    http: aiohttp.ClientSession | None = None,
) -> None:
    """`one(http, i)` for i < n, PREP_CONCURRENCY at a time, over `http` or a session of its
    own."""
    if http is None:
        connector = aiohttp.TCPConnector(limit=PREP_CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as own:
            await _bounded(n, one, own)
        return
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            await one(http, i)

    await asyncio.gather(*(worker() for _ in range(min(PREP_CONCURRENCY, n))))


# --------------------------------------------------------------------------- pools


class Pool:
    """Request lines for one workload; each line is handed out once."""

    name = "pool"
    consumable = True

    def __len__(self) -> int:
        raise NotImplementedError

    def ensure(self, n: int) -> int:
        """Prepare lines until at least `n` are available; returns how many were added."""
        raise NotImplementedError

    def take(self, n: int) -> list[Line]:
        raise NotImplementedError

    def give_back(self, lines: Sequence[Line]) -> None:
        raise NotImplementedError


class StaticPool(Pool):
    """One line repeated: client_credentials and the floor spend nothing per request."""

    consumable = False

    def __init__(self, name: str, line: Line) -> None:
        self.name = name
        self.line = line

    def __len__(self) -> int:
        return 1 << 62

    def ensure(self, n: int) -> int:
        return 0

    def take(self, n: int) -> list[Line]:
        return [self.line] * n

    def give_back(self, lines: Sequence[Line]) -> None:
        return None


class PreparedPool(Pool):
    """Lines prepared by `supply(n)` (untimed), handed out first in, first out. With `max_age`
    (seconds since their batch began, asked each time: authorization codes and client
    assertions expire), older lines are dropped unsent."""

    def __init__(
        self,
        name: str,
        supply: Callable[[int], list[Line]],
        on_prepare: Callable[[str, int, float], None] | None = None,
        max_age: Callable[[], float | None] | None = None,
    ) -> None:
        self.name = name
        self.supply = supply
        self.lines: deque[tuple[float, Line]] = deque()  # (prepared at, line)
        self._out: dict[int, float] = {}  # lines handed out and not yet given back
        self.prepared = 0
        self.expired = 0
        self.prepare_seconds = 0.0
        self.on_prepare = on_prepare
        self.max_age = max_age

    def __len__(self) -> int:
        self._drop_expired()
        return len(self.lines)

    def ensure(self, n: int) -> int:
        missing = n - len(self)
        if missing <= 0:
            return 0
        born = time.monotonic()  # a line is as old as the batch (codes, assertions expire)
        started = time.perf_counter()
        fresh = self.supply(missing)
        elapsed = time.perf_counter() - started
        self.lines.extend((born, line) for line in fresh)
        self.prepared += len(fresh)
        self.prepare_seconds += elapsed
        if self.on_prepare:
            self.on_prepare(self.name, len(fresh), elapsed)
        return len(fresh)

    def take(self, n: int) -> list[Line]:
        self.ensure(n)
        out = []
        for _ in range(min(n, len(self.lines))):
            born, line = self.lines.popleft()
            self._out[id(line)] = born
            out.append(line)
        return out

    def give_back(self, lines: Sequence[Line]) -> None:
        now = time.monotonic()
        self.lines.extendleft((self._out.get(id(line), now), line) for line in reversed(lines))
        self._out.clear()  # the rest were spent

    def _drop_expired(self) -> None:
        limit = self.max_age() if self.max_age is not None else None
        if limit is None:
            return
        oldest = time.monotonic() - limit
        while self.lines and self.lines[0][0] < oldest:
            self.lines.popleft()
            self.expired += 1


class MixPool(Pool):
    """Lines drawn from several pools (keyed by workload) in proportion to their weights,
    interleaved at random; lines given back go back to the pool they came from."""

    def __init__(self, parts: dict[str, tuple[Pool, float]], seed: int = 5) -> None:
        self.name = "mix"
        total = sum(w for _, w in parts.values())
        self.parts = {k: (p, w / total) for k, (p, w) in parts.items() if w > 0}
        self.consumable = any(p.consumable for p, _ in self.parts.values())
        self._random = random.Random(seed)  # noqa: S311 - an interleaving, not a secret
        self._part_of: dict[int, str] = {}  # lines handed out and not yet given back

    def __len__(self) -> int:
        return min(int(len(p) / w) for p, w in self.parts.values())

    @property
    def prepare_seconds(self) -> float:
        return sum(getattr(p, "prepare_seconds", 0.0) for p, _ in self.parts.values())

    def ensure(self, n: int) -> int:
        return sum(p.ensure(int(n * w * 1.05) + 16) for p, w in self.parts.values())

    def take(self, n: int) -> list[Line]:
        self.ensure(n)
        names = [name for name, (_, w) in self.parts.items() for _ in range(round(n * w))]
        names = (names + list(self.parts) * n)[:n]
        self._random.shuffle(names)
        drawn = {name: iter(self.parts[name][0].take(names.count(name))) for name in self.parts}
        out: list[Line] = []
        for name in names:
            line = next(drawn[name], None)
            if line is not None:
                self._part_of[id(line)] = name
                out.append(line)
        return out

    def give_back(self, lines: Sequence[Line]) -> None:
        back: dict[str, list[Line]] = {name: [] for name in self.parts}
        for line in lines:
            part = back.get(self._part_of.get(id(line), ""))
            if part is not None:
                part.append(line)
        self._part_of.clear()  # the rest were spent
        for name, part in back.items():
            self.parts[name][0].give_back(part)

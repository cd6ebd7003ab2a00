"""Where each grant's time goes, per request: the service's CPU, its waits on Redis and
Postgres, and the share of its CPU spent signing.

* Server CPU: the service's process tree in /proc (benchmarks.cpu), over the timed slices.
* Redis / Postgres: `tokensvc_store_duration_seconds` sum and count per store and operation
  from the service's own `/metrics`, before and after the timed part. Store calls are timed
  around the `await`, so under load they include time the call's coroutine waited for the
  event loop: read them from the open-loop run (half the peak) for service times, from the
  closed loop for what a saturated process sees.
* Signing: the service's signer timed in this process for the same key file (1,000 access
  and ID tokens, best of three, on the service's core), times the JWTs in a response.
* Requests: the service's own count of `/token` requests in the same window, so requests in
  flight at the end of a wrk slice (sent, not counted by wrk) do not skew the figures.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# store (the field of tokensvc.service.Stores) -> backend, with Redis and Postgres set
STORE_BACKENDS = {
    "codes": "redis",
    "revoked": "redis",
    "failures": "redis",
    "rates": "redis",
    "lockouts": "redis",
    "replay": "redis",  # private_key_jwt's jti, once
    "clients": "postgres",
    "federations": "postgres",
    "resources": "postgres",  # behind the in-process cache: misses only
    "users": "postgres",
    "grants": "postgres",
}
# The hot path's Postgres writes: each batch of them is one durable commit.
POSTGRES_WRITES = frozenset({("grants", "issue"), ("grants", "rotate")})
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Scrape:
    """The counters of one `/metrics` answer that attribution needs."""

    stores: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # [sum, count]
    token_requests: float = 0.0
    token_latency: list[float] = field(default_factory=lambda: [0.0, 0.0])  # [sum, count]
    batches: dict[tuple[str, str], float] = field(default_factory=dict)  # round trips made

    def minus(self, before: Scrape) -> Scrape:
        out = Scrape(
            token_requests=self.token_requests - before.token_requests,
            token_latency=[
                a - b for a, b in zip(self.token_latency, before.token_latency, strict=True)
            ],
        )
        for key, (total, count) in self.stores.items():
            b = before.stores.get(key, [0.0, 0.0])
            if count - b[1] > 0:
                out.stores[key] = [total - b[0], count - b[1]]
        for key, made in self.batches.items():
            moved = made - before.batches.get(key, 0.0)
            if moved > 0:
                out.batches[key] = moved
        return out

    def add(self, other: Scrape) -> Scrape:
        self.token_requests += other.token_requests
        self.token_latency = [
            a + b for a, b in zip(self.token_latency, other.token_latency, strict=True)
        ]
        for key, (total, count) in other.stores.items():
            mine = self.stores.setdefault(key, [0.0, 0.0])
            mine[0] += total
            mine[1] += count
        for key, made in other.batches.items():
            self.batches[key] = self.batches.get(key, 0.0) + made
        return self


def parse_metrics(text: str) -> Scrape:
    scrape = Scrape()
    for line in text.splitlines():
        if not line.startswith("tokensvc_"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, raw_labels, value = match.group(1), match.group(2), float(match.group(3))
        labels = dict(_LABEL.findall(raw_labels))
        if name == "tokensvc_http_requests_total" and labels.get("endpoint") == "/token":
            scrape.token_requests += value
        elif (
            name.startswith("tokensvc_http_request_duration_seconds_")
            and labels.get("endpoint") == "/token"
        ):
            if name.endswith("_sum"):
                scrape.token_latency[0] += value
            elif name.endswith("_count"):
                scrape.token_latency[1] += value
        elif name == "tokensvc_store_batches_total":
            key = (labels.get("store", "?"), labels.get("operation", "?"))
            scrape.batches[key] = scrape.batches.get(key, 0.0) + value
        elif name.startswith("tokensvc_store_duration_seconds_"):
            key = (labels.get("store", "?"), labels.get("operation", "?"))
            slot = scrape.stores.setdefault(key, [0.0, 0.0])
            if name.endswith("_sum"):
                slot[0] += value
            elif name.endswith("_count"):
                slot[1] += value
    return scrape


def scrape(url: str | None, timeout: float = 5.0) -> Scrape | None:
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator's URL
            return parse_metrics(resp.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


class MetricsWindows:
    """Deltas of `/metrics` over one or more windows (preparation between them excluded)."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.total: Scrape | None = Scrape() if url else None
        self._open: Scrape | None = None
        self.failed = False

    def open(self) -> None:
        if self.url:
            self._open = scrape(self.url)
            self.failed = self.failed or self._open is None

    def close(self) -> None:
        if self.url and self._open is not None and self.total is not None:
            after = scrape(self.url)
            if after is None:
                self.failed = True
            else:
                self.total.add(after.minus(self._open))
        self._open = None

    def result(self) -> Scrape | None:
        return None if self.failed else self.total


# --------------------------------------------------------------------------- signing

_ACCESS_CLAIMS = {
    "iss": "http://127.0.0.1:8080",
    "sub": "bench-user-5f2b9c0e",
    "aud": "http://127.0.0.1:8080",
    "exp": 0,
    "iat": 0,
    "jti": "n1E4t7b8Q0W5u2Xk9ZpL3g",
    "client_id": "c" * 22,
    "scope": "openid profile email offline_access",
    "gid": "g" * 22,
    "auth_time": 0,
    "amr": ["pwd"],
}
_ID_CLAIMS = {
    "iss": "http://127.0.0.1:8080",
    "sub": "bench-user-5f2b9c0e",
    "aud": "c" * 22,
    "exp": 0,
    "iat": 0,
    "auth_time": 0,
    "nonce": "n-0S6_WzA2Mj",
    "at_hash": "a" * 22,
    "azp": "c" * 22,
    "amr": ["pwd"],
    "sid": "s" * 16,
    "email": "bench@example.com",
    "email_verified": True,
    "name": "Bench User",
}


def _claims(template: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    return {**template, "iat": now, "exp": now + 3600, "auth_time": now - 5}


def _best_of(sign: Any, claims: dict[str, Any], rounds: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds):
            sign(claims)
        best = min(best, (time.perf_counter() - started) / rounds)
    return best * 1e6


def _service_signer(keys_file: str) -> tuple[Any, Any, str]:
    """The service's own hot-path signer for the key signing now."""
    from tokensvc.signing.keys import load_keys_file

    keys = load_keys_file(keys_file)
    signer = keys.signer_at(time.time()) if hasattr(keys, "signer_at") else keys.signer
    return (
        lambda c: signer.sign(c, "at+jwt"),
        lambda c: signer.sign(c, "JWT"),
        f"tokensvc.signing ({getattr(signer, 'alg', '?')}, the service's signer)",
    )


def _raw_signer(keys_file: str) -> tuple[Any, Any, str]:
    """Fallback: a bare ECDSA P-256 signature with `cryptography` (a lower bound)."""
    import orjson
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    with open(keys_file, "rb") as f:
        jwks = orjson.loads(f.read())
    jwk = next(k for k in jwks["keys"] if k.get("kty") == "EC" and "d" in k)
    d = int.from_bytes(base64.urlsafe_b64decode(jwk["d"] + "=" * (-len(jwk["d"]) % 4)), "big")
    key = ec.derive_private_key(d, ec.SECP256R1())

    def sign(claims: dict[str, Any]) -> bytes:
        payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=")
        return key.sign(b"eyJhbGciOiJFUzI1NiJ9." + payload, ec.ECDSA(hashes.SHA256()))

    return sign, sign, "cryptography ECDSA P-256 (bare signature: a lower bound)"


def signing_cost(
    keys_file: str | None,
    cores: Iterable[int] = (),
    rounds: int = 1000,
) -> dict[str, Any] | None:
    """µs to sign an access token and an ID token with the service's key, on its core."""
    if not keys_file:
        return None
    try:
        sign_at, sign_id, method = _service_signer(keys_file)
    except Exception:  # the service's API moved: measure the bare signature instead
        try:
            sign_at, sign_id, method = _raw_signer(keys_file)
        except Exception as exc:
            return {"error": f"cannot time signing: {exc}"}
    previous = None
    wanted = set(cores)
    if wanted and hasattr(os, "sched_setaffinity"):
        previous = os.sched_getaffinity(0)
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, wanted)
    try:
        sign_at(_claims(_ACCESS_CLAIMS))  # warm up
        access = _best_of(sign_at, _claims(_ACCESS_CLAIMS), rounds)
        id_token = _best_of(sign_id, _claims(_ID_CLAIMS), rounds)
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)
    return {
        "method": method,
        "rounds": rounds,
        "access_token_us": round(access, 1),
        "id_token_us": round(id_token, 1),
    }


def jwts_in(sample: dict[str, Any] | None) -> dict[str, int]:
    """Which signed tokens a 200 response carries: {"access_token": 1, "id_token": 1}."""
    if not sample:
        return {}
    return {
        name: 1
        for name in ("access_token", "id_token")
        if isinstance(sample.get(name), str) and sample[name].count(".") == 2
    }


def signing_us(tokens: dict[str, int], cost: dict[str, Any] | None) -> float | None:
    if not cost or "access_token_us" not in cost or not tokens:
        return None
    return (
        tokens.get("access_token", 0) * cost["access_token_us"]
        + tokens.get("id_token", 0) * cost["id_token_us"]
    )


# --------------------------------------------------------------------------- per request


def breakdown(
    requests: float,
    service_cpu: float | None,
    metrics: Scrape | None,
    signing: float | None,
    redis_cpu: float | None = None,
    postgres_cpu: float | None = None,
) -> dict[str, Any]:
    """µs per request for each component (None where unknown)."""

    def per(value: float | None) -> float | None:
        return round(value / requests * 1e6, 1) if value is not None and requests else None

    out: dict[str, Any] = {
        "requests": int(requests),
        "service_cpu_us": per(service_cpu),
        "signing_us": round(signing, 1) if signing is not None else None,
        "redis_wait_us": None,
        "postgres_wait_us": None,
        "redis_cpu_us": per(redis_cpu),
        "postgres_cpu_us": per(postgres_cpu),
        "server_latency_ms": None,
        "operations": {},
    }
    if metrics is not None and requests:
        waits = {"redis": 0.0, "postgres": 0.0, "other": 0.0}
        for (store, op), (total, count) in sorted(metrics.stores.items()):
            waits[STORE_BACKENDS.get(store, "other")] += total
            out["operations"][f"{store}.{op}"] = {
                "backend": STORE_BACKENDS.get(store, "other"),
                "calls_per_request": round(count / requests, 3),
                "us_per_call": round(total / count * 1e6, 1) if count else None,
            }
            made = metrics.batches.get((store, op))
            if made is not None:
                out["operations"][f"{store}.{op}"]["round_trips_per_request"] = round(
                    made / requests, 3
                )
        writes = [metrics.batches[key] for key in POSTGRES_WRITES if key in metrics.batches]
        if writes:
            out["postgres_commits_per_request"] = round(sum(writes) / requests, 3)
        out["redis_wait_us"] = round(waits["redis"] / requests * 1e6, 1)
        out["postgres_wait_us"] = round(waits["postgres"] / requests * 1e6, 1)
        if waits["other"]:
            out["other_store_wait_us"] = round(waits["other"] / requests * 1e6, 1)
        total, count = metrics.token_latency
        if count:
            out["server_latency_ms"] = round(total / count * 1e3, 3)
    if out["service_cpu_us"] is not None and signing is not None:
        out["other_cpu_us"] = round(out["service_cpu_us"] - signing, 1)
    return out

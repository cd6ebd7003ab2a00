"""Workloads for a registered API (README "Resources and audiences"), each measured against
`client_credentials` for the issuer in the same run:

* `cc_resource`: `client_credentials` with `resource=https://bench-api.example` (RFC 8707),
  by a client of its own, `bench-resource`: the machine client's registration plus
  `--scope bench:read --resource https://bench-api.example`. A second client rather than the
  machine client with a resource, because a client with resources pays a store read even for
  its issuer tokens (their scope leaves out its resources' scopes): the baseline stays the
  plain path it always was. One line, sent again and again, like `client_credentials`.
* `token_exchange` (RFC 8693): `bench-exchanger` (the token-exchange grant, `--scope
  bench:read --resource https://bench-api.example`) exchanges a subject token for a token for
  the resource. The subject token is an access token for the issuer with scope `bench:read`,
  obtained before anything is timed from `bench-subject`, a `client_credentials` client with
  that scope and no resource (a client with the resource could not hold `bench:read` in a
  token for the issuer). Exchange does not spend its subject token, so one line is repeated
  (README: why one token and not a pool).

A request line is the kit's `(basic, body)` (benchmarks.prepare): client_secret_basic, like
the baseline. Before the run one answer of each must carry an access token whose `aud` is the
resource (the JWT's payload, read without verifying it: a check of the set-up, not of the
service's signature).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.prepare import (
    Client,
    Line,
    PrepareError,
    add_client,
    client_credentials_line,
    run_tokensvc,
    tokensvc_env,
)

RESOURCE = "https://bench-api.example"
RESOURCE_SCOPE = "bench:read"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
MACHINE = ("--grant-type", "client_credentials", "--scope", "api:read")  # as bench-machine


@dataclass(frozen=True)
class ResourceClients:
    """The registered clients; the token_exchange ones only when that workload runs."""

    resource: Client  # cc_resource
    subject: Client | None = None  # whose token is exchanged
    exchanger: Client | None = None  # token_exchange

    def resource_line(self) -> Line:
        """The one request of cc_resource: client_credentials's own, plus `resource` and
        nothing else (no `scope`, as the baseline sends none: the token gets the resource's
        scopes the client has, `bench:read`)."""
        return client_credentials_line(self.resource, {"resource": RESOURCE})

    def subject_line(self) -> Line:
        """The request that gets the subject token (for the issuer, scope bench:read)."""
        assert self.subject is not None
        return client_credentials_line(self.subject, {"scope": RESOURCE_SCOPE})

    def exchange_line(self, subject_token: str) -> Line:
        """The one request of token_exchange: `subject_token` for a token for the resource."""
        assert self.exchanger is not None
        return exchange_line(self.exchanger, subject_token)


def exchange_line(client: Client, subject_token: str) -> Line:
    return client.line(
        {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "resource": RESOURCE,
            "scope": RESOURCE_SCOPE,
        }
    )


def _client(database_url: str, name: str, *args: str) -> Client:
    """`tokensvc client add --name NAME ARGS` as a client_secret_basic client."""
    registered = add_client(database_url, "--name", name, *args)
    return Client(registered["client_id"], registered["client_secret"])


def _add_resource(database_url: str) -> None:
    """Register RESOURCE with RESOURCE_SCOPE, or keep the one an earlier run on this database
    left, if it has that scope (a resource holds no key: nothing stale to refuse)."""
    env = tokensvc_env(database_url)
    try:
        run_tokensvc(
            [
                "resource",
                "add",
                "--identifier",
                RESOURCE,
                "--scope",
                RESOURCE_SCOPE,
                "--name",
                "bench-api",
            ],
            env,
            timeout=60,
            error=PrepareError,
            what=f"resource add --identifier {RESOURCE}",
        )
    except PrepareError as refused:
        try:
            listed = json.loads(
                run_tokensvc(["resource", "list"], env, timeout=60, error=PrepareError)
            )
        except (PrepareError, ValueError):
            raise refused from None
        mine = [r for r in listed if r.get("identifier") == RESOURCE]
        if not mine or RESOURCE_SCOPE not in mine[0].get("scopes", ()):
            raise PrepareError(
                f"{refused} (one without {RESOURCE_SCOPE} left on this database? "
                f"`tokensvc resource remove {RESOURCE}`)"
            ) from None


def register(database_url: str, exchange: bool) -> ResourceClients:
    """The resource and bench-resource; with `exchange`, bench-subject and bench-exchanger."""
    _add_resource(database_url)
    to_resource = ("--scope", RESOURCE_SCOPE, "--resource", RESOURCE)
    resource = _client(database_url, "bench-resource", *MACHINE, *to_resource)
    if not exchange:
        return ResourceClients(resource)
    subject = _client(
        database_url,
        "bench-subject",
        "--grant-type",
        "client_credentials",
        "--scope",
        RESOURCE_SCOPE,
    )
    try:
        exchanger = _client(
            database_url, "bench-exchanger", "--grant-type", TOKEN_EXCHANGE, *to_resource
        )
    except PrepareError as exc:
        raise PrepareError(
            f"token_exchange: registering bench-exchanger failed (does this tokensvc have "
            f"the RFC 8693 grant?): {exc}"
        ) from exc
    return ResourceClients(resource, subject, exchanger)


# --------------------------------------------------------------------------- checks


def claims(token: str) -> dict[str, Any]:
    """A JWT's payload, NOT verified: enough to see what the set-up produced."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        raise PrepareError("the access token is not a JWT") from None
    if not isinstance(data, dict):
        raise PrepareError("the access token's payload is not a JSON object")
    return data


def check_for_resource(workload: str, body: dict[str, Any]) -> None:
    """A 200 body of `workload` must hold an access token for RESOURCE alone."""
    aud = claims(body["access_token"]).get("aud")
    if aud not in (RESOURCE, [RESOURCE]):
        raise PrepareError(f"{workload}: the access token's aud is {aud!r}, not {RESOURCE!r}")


def check_exchanged(workload: str, body: dict[str, Any]) -> None:
    """RFC 8693 §2.2.1: an access token, issued as one, for RESOURCE."""
    issued = body.get("issued_token_type")
    if issued != ACCESS_TOKEN_TYPE:
        raise PrepareError(f"{workload}: issued_token_type is {issued!r}, not {ACCESS_TOKEN_TYPE}")
    check_for_resource(workload, body)


CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "cc_resource": check_for_resource,
    "token_exchange": check_exchanged,
}

"""The fuzz's settings and its long-lived services (one set per module and backend).

Profiles (`TOKENSVC_FUZZ_PROFILE`): `ci`, the default, is derandomized with no example
database, so every run tries the same inputs and the suite stays within about a minute;
`deep` draws fresh random inputs and ten times as many (run it by hand when touching parsers).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.stack import Stack, real_urls, running_stack

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
settings.register_profile("deep", parent=settings.get_profile("ci"), derandomize=False)
PROFILE = os.environ.get("TOKENSVC_FUZZ_PROFILE", "ci")
SCALE = 10 if PROFILE == "deep" else 1


def fuzz(examples: int) -> settings:
    """The settings of one fuzz: the profile, with `examples` inputs (x10 when deep)."""
    return settings(settings.get_profile(PROFILE), max_examples=examples * SCALE)


@pytest.fixture(scope="module", params=["memory", "real"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _urls(request: pytest.FixtureRequest, backend: str, stack: str) -> tuple[str, str] | None:
    """A database of its own for each stack of a module: a module may use both stacks, and
    the second's start must not wipe the first's world."""
    if backend == "memory":
        return None
    module = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1])
    name = f"fuzz_{stack}_{module}"
    return real_urls(
        request.getfixturevalue("redis_url"), request.getfixturevalue("postgres_admin_url"), name
    )


@pytest.fixture(scope="module")
def token_stack(request: pytest.FixtureRequest, backend: str, log_sink: Any) -> Iterator[Stack]:
    """The token service with its world of clients and credentials, for one module."""
    with running_stack(backend, _urls(request, backend, "token"), log_sink=log_sink) as stack:
        yield stack


@pytest.fixture(scope="module")
def login_stack(request: pytest.FixtureRequest, backend: str, log_sink: Any) -> Iterator[Stack]:
    """The token service and the login front-end in front of it, for one module."""
    with running_stack(
        backend, _urls(request, backend, "login"), with_login=True, log_sink=log_sink
    ) as stack:
        yield stack

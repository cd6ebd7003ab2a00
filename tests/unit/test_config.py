"""`config.load`: the SPEC's Configuration table, dev defaults, one clear line per bad setting."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from tokensvc import config, redis_client
from tokensvc.config import ConfigError, Settings

INTERNAL_TOKEN = "internal-token-0123456789abcdef"

# The three settings required outside `tokensvc dev`.
REQUIRED = {
    "TOKENSVC_ISSUER": "https://auth.example.com",
    "TOKENSVC_INTERNAL_TOKEN": INTERNAL_TOKEN,
    "TOKENSVC_KEYS_FILE": "/etc/tokensvc/jwks.json",
}


def load(**overrides: str) -> Settings:
    return config.load({**REQUIRED, **overrides})


def config_error(env: dict[str, str], *, dev: bool = False) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(env, dev=dev)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- defaults


def test_defaults_follow_the_spec_table() -> None:
    s = load(TOKENSVC_LOG_FORMAT="json")
    assert s.issuer == "https://auth.example.com"
    assert s.internal_token == INTERNAL_TOKEN
    assert s.keys_file == "/etc/tokensvc/jwks.json"
    assert s.database_url is None  # unset: in-memory
    assert s.redis_url is None
    assert s.token_internal_url == "http://127.0.0.1:8081"
    assert (s.host, s.port, s.internal_port, s.login_port) == ("0.0.0.0", 8080, 8081, 8090)  # noqa: S104
    assert s.workers == 1
    assert (s.access_token_ttl, s.refresh_token_ttl, s.code_ttl) == (3600, 2_592_000, 60)
    assert s.refresh_grace == 5
    assert s.log_format == "json"
    assert s.dev is False


def test_every_variable_is_read() -> None:
    s = load(
        TOKENSVC_DATABASE_URL="postgresql://u@db:5432/tokensvc",
        TOKENSVC_REDIS_URL="redis://cache:6379/3",
        TOKENSVC_TOKEN_INTERNAL_URL="http://token-internal:9000/",
        TOKENSVC_LOGIN_URL="https://login.example.com/",
        TOKENSVC_HOST="127.0.0.1",
        TOKENSVC_PORT="9080",
        TOKENSVC_INTERNAL_PORT="9081",
        TOKENSVC_LOGIN_PORT="9090",
        TOKENSVC_WORKERS="4",
        TOKENSVC_ACCESS_TOKEN_TTL="300",
        TOKENSVC_REFRESH_TOKEN_TTL="86400",
        TOKENSVC_CODE_TTL="30",
        TOKENSVC_REFRESH_GRACE="0",
        TOKENSVC_LOG_FORMAT="console",
    )
    assert s.database_url == "postgresql://u@db:5432/tokensvc"
    assert s.redis_url == "redis://cache:6379/3"
    assert s.token_internal_url == "http://token-internal:9000"
    assert s.login_url == "https://login.example.com"
    assert (s.host, s.port, s.internal_port, s.login_port) == ("127.0.0.1", 9080, 9081, 9090)
    assert s.workers == 4
    assert (s.access_token_ttl, s.refresh_token_ttl, s.code_ttl) == (300, 86400, 30)
    assert s.refresh_grace == 0
    assert s.log_format == "console"


_PRINT_LOG_FORMAT = (
    "import sys; from tokensvc import config; "
    "sys.stderr.write(config.load({}, dev=True).log_format)"
)


@pytest.mark.parametrize(("stdout_is_tty", "expected"), [(True, "console"), (False, "json")])
def test_log_format_defaults_to_console_only_when_stdout_is_a_terminal(
    stdout_is_tty: bool, expected: str
) -> None:
    # Logs are written to stdout, so stdout decides (stderr is a terminal in both runs).
    primary, secondary = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PRINT_LOG_FORMAT],
            env=_bare_env(),
            stdin=subprocess.DEVNULL,
            stdout=secondary if stdout_is_tty else subprocess.PIPE,
            stderr=subprocess.PIPE if stdout_is_tty else secondary,
            timeout=30,
        )
        written = result.stderr.decode() if stdout_is_tty else os.read(primary, 100).decode()
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 0
    assert written == expected


def test_issuer_trailing_slash_is_dropped() -> None:
    assert load(TOKENSVC_ISSUER="https://auth.example.com/tenant/").issuer == (
        "https://auth.example.com/tenant"
    )


def test_empty_values_mean_unset() -> None:
    s = load(TOKENSVC_PORT="", TOKENSVC_DATABASE_URL="", TOKENSVC_REDIS_URL="")
    assert (s.port, s.database_url, s.redis_url) == (8080, None, None)


# --------------------------------------------------------------------------- login URL


@pytest.mark.parametrize(
    ("issuer", "login_port", "expected"),
    [
        ("https://auth.example.com", None, "https://auth.example.com:8090"),
        ("https://auth.example.com:8443/realm", "9443", "https://auth.example.com:9443"),
        ("http://127.0.0.1:8080", "18090", "http://127.0.0.1:18090"),
        ("http://[::1]:8080", None, "http://[::1]:8090"),
    ],
)
def test_login_url_defaults_to_issuer_scheme_and_host_with_login_port(
    issuer: str, login_port: str | None, expected: str
) -> None:
    env = {"TOKENSVC_ISSUER": issuer}
    if login_port is not None:
        env["TOKENSVC_LOGIN_PORT"] = login_port
    assert load(**env).login_url == expected


def test_explicit_login_url_wins() -> None:
    s = load(TOKENSVC_LOGIN_URL="https://login.example.com", TOKENSVC_LOGIN_PORT="1234")
    assert s.login_url == "https://login.example.com"


# --------------------------------------------------------------------------- dev


def test_dev_needs_nothing() -> None:
    s = config.load({}, dev=True)
    assert s.dev is True
    assert s.issuer == "http://127.0.0.1:8080"
    assert s.internal_token is None  # dev generates one
    assert s.keys_file is None  # dev generates a key
    assert s.database_url is None and s.redis_url is None
    assert s.login_url == "http://127.0.0.1:8090"


def test_dev_issuer_follows_the_port() -> None:
    s = config.load({"TOKENSVC_PORT": "18080", "TOKENSVC_LOGIN_PORT": "18090"}, dev=True)
    assert s.issuer == "http://127.0.0.1:18080"
    assert s.port == 18080
    assert s.login_url == "http://127.0.0.1:18090"


def test_dev_still_honours_an_explicit_issuer_and_still_validates() -> None:
    assert config.load({"TOKENSVC_ISSUER": "http://localhost:1"}, dev=True).issuer == (
        "http://localhost:1"
    )
    assert "TOKENSVC_PORT" in config_error({"TOKENSVC_PORT": "eighty"}, dev=True)


# --------------------------------------------------------------------------- required


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_required_outside_dev(missing: str) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != missing}
    assert missing in config_error(env)


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_empty_required_value_counts_as_missing(missing: str) -> None:
    assert missing in config_error({**REQUIRED, missing: ""})


def test_short_internal_token_is_rejected() -> None:
    assert "TOKENSVC_INTERNAL_TOKEN" in config_error({**REQUIRED, "TOKENSVC_INTERNAL_TOKEN": "x"})


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOKENSVC_PORT", "abc"),
        ("TOKENSVC_PORT", "80.5"),
        ("TOKENSVC_PORT", "-1"),
        ("TOKENSVC_PORT", "65536"),
        ("TOKENSVC_INTERNAL_PORT", "x"),
        ("TOKENSVC_INTERNAL_PORT", "100000"),
        ("TOKENSVC_LOGIN_PORT", "port"),
        ("TOKENSVC_LOGIN_PORT", "70000"),
        ("TOKENSVC_WORKERS", "0"),
        ("TOKENSVC_WORKERS", "many"),
        ("TOKENSVC_ACCESS_TOKEN_TTL", "-1"),
        ("TOKENSVC_ACCESS_TOKEN_TTL", "0"),
        ("TOKENSVC_ACCESS_TOKEN_TTL", "1h"),
        ("TOKENSVC_REFRESH_TOKEN_TTL", "-3600"),
        ("TOKENSVC_CODE_TTL", "-5"),
        ("TOKENSVC_CODE_TTL", "1e3"),
        ("TOKENSVC_REFRESH_GRACE", "-1"),
        ("TOKENSVC_REDIS_URL", "http://x"),
        ("TOKENSVC_REDIS_URL", "localhost:6379"),
        ("TOKENSVC_REDIS_URL", "redis+cluster://a:7000,b:x"),
        ("TOKENSVC_REDIS_URL", "redis+cluster://a:7000,"),
        ("TOKENSVC_REDIS_URL", "redis+sentinel://a:26379"),
        ("TOKENSVC_REDIS_URL", "redis+sentinel://a:26379/master/db"),
        ("TOKENSVC_DATABASE_URL", "mysql://db/tokensvc"),
        ("TOKENSVC_DATABASE_URL", "http://db"),
        ("TOKENSVC_TOKEN_INTERNAL_URL", "ftp://internal"),
        ("TOKENSVC_LOGIN_URL", "javascript:alert(1)"),
        ("TOKENSVC_ISSUER", "https://auth.example.com/?tenant=a"),
        ("TOKENSVC_ISSUER", "https://auth.example.com/#frag"),
        ("TOKENSVC_ISSUER", "ftp://auth.example.com"),
        ("TOKENSVC_ISSUER", "auth.example.com"),
        ("TOKENSVC_ISSUER", "https://"),
        ("TOKENSVC_LOG_FORMAT", "xml"),
        ("TOKENSVC_LOG_FORMAT", "JSON"),
    ],
)
def test_malformed_setting_names_the_variable(name: str, value: str) -> None:
    message = config_error({**REQUIRED, name: value})
    assert message.startswith(name), message


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        "rediss+cluster://:pw@[::1]:7000",
        "redis+sentinel://s1:26379,s2:26379/tokensvc",
        "rediss+sentinel://user:pw@s1:26379/tokensvc/2?sentinel_password=x",
    ],
)
def test_redis_cluster_and_sentinel_urls_are_accepted(url: str) -> None:
    assert load(TOKENSVC_REDIS_URL=url).redis_url == url


def test_a_rejected_url_never_shows_its_password() -> None:
    message = config_error({**REQUIRED, "TOKENSVC_DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert "hunter2" not in message and "***" in message


@pytest.mark.parametrize(
    ("netloc", "expected"),
    [
        ("h:7000", (None, None, [("h", 7000)])),
        ("u:p%40ss@a:1,b:2", ("u", "p@ss", [("a", 1), ("b", 2)])),
        (":pw@[::1]:7000,[fe80::1]", (None, "pw", [("::1", 7000), ("fe80::1", 6379)])),
    ],
)
def test_redis_host_lists_parse(netloc: str, expected: tuple[object, ...]) -> None:
    assert redis_client._hosts(netloc) == expected


def test_malformed_setting_is_reported_in_dev_too() -> None:
    assert config_error({"TOKENSVC_REDIS_URL": "http://x"}, dev=True).startswith(
        "TOKENSVC_REDIS_URL"
    )


@pytest.mark.parametrize("value", ["0", "65535"])
def test_port_bounds_are_inclusive(value: str) -> None:
    assert load(TOKENSVC_PORT=value).port == int(value)


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock"])
def test_accepted_redis_urls(url: str) -> None:
    assert load(TOKENSVC_REDIS_URL=url).redis_url == url


# --------------------------------------------------------------------------- the command


def _bare_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TOKENSVC_")}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({}, "TOKENSVC_ISSUER"),
        ({"TOKENSVC_ISSUER": REQUIRED["TOKENSVC_ISSUER"]}, "TOKENSVC_INTERNAL_TOKEN"),
        (
            {k: v for k, v in REQUIRED.items() if k != "TOKENSVC_KEYS_FILE"},
            "TOKENSVC_KEYS_FILE",
        ),
        ({**REQUIRED, "TOKENSVC_PORT": "abc"}, "TOKENSVC_PORT"),
        ({**REQUIRED, "TOKENSVC_KEYS_FILE": "/nonexistent/jwks.json"}, "TOKENSVC_KEYS_FILE"),
    ],
)
def test_serve_token_stops_at_start_with_one_line(settings: dict[str, str], named: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tokensvc", "serve", "token"],
        env={**_bare_env(), **settings},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert result.stdout == ""

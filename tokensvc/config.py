"""One frozen `Settings`, built once from the `TOKENSVC_*` environment (SPEC: Configuration).

Every other module receives the settings (or the narrow slice it needs) as an argument, so a
test can build any configuration without touching `os.environ`.
"""

from __future__ import annotations

import hmac
import os
import re
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

from tokensvc.digits import whole_number
from tokensvc.forwarded import parse_networks

PREFIX = "TOKENSVC_"


class ConfigError(ValueError):
    """A missing or malformed setting; its message is the one line an operator sees."""


# The longest an access or ID token lives by default; key rotation (`keys rotate`) keeps a
# replaced key published at least this long.
DEFAULT_ACCESS_TOKEN_TTL = 3600


@dataclass(frozen=True, slots=True)
class Settings:
    issuer: str
    database_url: str | None = None
    redis_url: str | None = None
    keys_file: str | None = None
    internal_token: str | None = None
    admin_token: str | None = None  # None: every /admin/* request is 404
    token_internal_url: str = "http://127.0.0.1:8081"
    login_url: str = ""
    host: str = "0.0.0.0"  # noqa: S104 - a service listens on all interfaces by default
    port: int = 8080
    internal_port: int = 8081
    login_port: int = 8090
    workers: int = 1
    drain_seconds: int = 5  # after SIGTERM: not ready, still serving (tokensvc.http.server)
    keys_reload_seconds: int = 60  # re-read TOKENSVC_KEYS_FILE this often (0: on SIGHUP only)
    access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL
    refresh_token_ttl: int = 2_592_000
    code_ttl: int = 60
    refresh_grace: int = 5
    client_cache_ttl: int = 30
    log_format: Literal["json", "console"] = "json"
    trusted_proxies: tuple[str, ...] = ()
    # RFC 8705 (README, *Client certificates*): the public listener's own certificate and key
    # (HTTPS when set), the CA bundle client certificates must chain to, and the header in
    # which a TLS-terminating proxy from `trusted_proxies` forwards the client's certificate.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    client_cert_header: str | None = None
    # The trust domain transaction tokens name in `aud` (draft-ietf-oauth-transaction-tokens
    # §4); empty: the issuer.
    txn_token_audience: str = ""
    # RFC 9449 §8: every DPoP proof at /token must carry a current server nonce.
    dpop_nonce: bool = False
    dev: bool = False

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    value = whole_number(raw, signed=True)
    if value is None:
        raise ConfigError(f"{PREFIX}{name} must be an integer, got {raw!r}")
    if value < minimum:
        raise ConfigError(f"{PREFIX}{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{PREFIX}{name} must be <= {maximum}, got {value}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    return _int(env, name, default, maximum=65535)


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(PREFIX + name) or None
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or (not parts.netloc and not parts.path):
        shown = raw.replace(f":{parts.password}@", ":***@") if parts.password else raw
        raise ConfigError(f"{PREFIX}{name} must be a {'/'.join(schemes)} URL, got {shown!r}")
    return raw


REDIS_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
)


def _redis_url(env: Mapping[str, str]) -> str | None:
    """One server, a cluster (`redis+cluster://h:p,h:p`) or Sentinel
    (`redis+sentinel://h:p,h:p/service[/db]`): see `tokensvc.redis_client`."""
    url = _url(env, "REDIS_URL", REDIS_SCHEMES)
    if url is None or "+" not in url.split(":", 1)[0]:
        return url
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2].split(",")
    ports_ok = all(
        whole_number(h.rpartition(":")[2]) is not None for h in hosts if h.rfind(":") > h.rfind("]")
    )
    service = [p for p in parts.path.split("/") if p]
    if (
        not all(hosts)
        or not ports_ok
        or (
            parts.scheme.endswith("+sentinel")
            and not (
                1 <= len(service) <= 2
                and (len(service) == 1 or whole_number(service[1]) is not None)
            )
        )
    ):
        raise ConfigError(
            f"{PREFIX}REDIS_URL must look like redis+cluster://host:port[,host:port...] or "
            f"redis+sentinel://host:port[,host:port...]/service[/db]"
        )
    return url


def _issuer(raw: str) -> str:
    """OIDC Discovery §3 and RFC 8414 §2: https (http allowed for loopback), no query/fragment."""
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{PREFIX}ISSUER must be an http(s) URL, got {raw!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{PREFIX}ISSUER must not have a query or fragment, got {raw!r}")
    return raw.rstrip("/")


# RFC 9110 §5.1: a field name is a token.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")


def _readable(name: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(
            f"{PREFIX}{name} cannot be read: {path!r} ({exc.strerror or type(exc).__name__})"
        ) from None


def _tls(env: Mapping[str, str], check_files: bool) -> tuple[str | None, ...]:
    """The TLS settings: certificate and key together or neither, a CA bundle of PEM
    certificates, a header name that needs trusted proxies. The files are opened and parsed
    here (`check_files`: the token service), so a bad one stops the start with one line."""
    cert = env.get(PREFIX + "TLS_CERT_FILE") or None
    key = env.get(PREFIX + "TLS_KEY_FILE") or None
    ca = env.get(PREFIX + "TLS_CLIENT_CA_FILE") or None
    header = env.get(PREFIX + "CLIENT_CERT_HEADER") or None
    if (cert is None) != (key is None):
        raise ConfigError(f"{PREFIX}TLS_CERT_FILE and {PREFIX}TLS_KEY_FILE must be set together")
    if header is not None:
        if not _HEADER_NAME.fullmatch(header):
            raise ConfigError(f"{PREFIX}CLIENT_CERT_HEADER must be a header name, got {header!r}")
        if not (env.get(PREFIX + "TRUSTED_PROXIES") or "").strip():
            raise ConfigError(
                f"{PREFIX}CLIENT_CERT_HEADER is believed only from {PREFIX}TRUSTED_PROXIES: "
                "set the proxies' networks too"
            )
    if check_files:
        if cert is not None and key is not None:
            _readable("TLS_CERT_FILE", cert)
            _readable("TLS_KEY_FILE", key)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:  # a password callback, so an encrypted key never prompts on a terminal
                context.load_cert_chain(cert, key, password=lambda: b"")
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    f"{PREFIX}TLS_CERT_FILE and {PREFIX}TLS_KEY_FILE are not a PEM certificate "
                    f"and its unencrypted private key ({getattr(exc, 'reason', None) or exc})"
                ) from None
        if ca is not None:
            from cryptography import x509

            try:
                x509.load_pem_x509_certificates(_readable("TLS_CLIENT_CA_FILE", ca))
            except ValueError:
                raise ConfigError(
                    f"{PREFIX}TLS_CLIENT_CA_FILE must hold PEM certificates: {ca!r}"
                ) from None
    return cert, key, ca, header


def load(
    env: Mapping[str, str] | None = None, *, dev: bool = False, signs: bool = True
) -> Settings:
    """Build the settings; raise `ConfigError` naming the first bad variable. `signs=False`
    for the login front-end, which holds no keys."""
    env = os.environ if env is None else env
    port = _port(env, "PORT", 8080)
    raw_issuer = env.get(PREFIX + "ISSUER") or (f"http://127.0.0.1:{port}" if dev else None)
    if raw_issuer is None:
        raise ConfigError(f"{PREFIX}ISSUER is required (e.g. https://auth.example.com)")
    issuer = _issuer(raw_issuer)

    internal_token = env.get(PREFIX + "INTERNAL_TOKEN") or None
    if internal_token is None and not dev:
        raise ConfigError(f"{PREFIX}INTERNAL_TOKEN is required outside `tokensvc dev`")
    if internal_token is not None and len(internal_token) < 16:
        raise ConfigError(f"{PREFIX}INTERNAL_TOKEN must be at least 16 characters")
    admin_token = env.get(PREFIX + "ADMIN_TOKEN") or None
    if admin_token is not None and len(admin_token) < 16:
        raise ConfigError(f"{PREFIX}ADMIN_TOKEN must be at least 16 characters")
    if admin_token is not None and hmac.compare_digest(admin_token, internal_token or ""):
        # The login front-end holds the internal token; it must not be able to administer.
        raise ConfigError(f"{PREFIX}ADMIN_TOKEN must differ from {PREFIX}INTERNAL_TOKEN")

    # Logs go to stdout (tokensvc.logs), so stdout is the terminal that matters.
    log_format = env.get(PREFIX + "LOG_FORMAT") or ("console" if sys.stdout.isatty() else "json")
    if log_format not in ("json", "console"):
        raise ConfigError(f"{PREFIX}LOG_FORMAT must be 'json' or 'console', got {log_format!r}")

    keys_file = env.get(PREFIX + "KEYS_FILE") or None
    if keys_file is None and not dev and signs:
        raise ConfigError(f"{PREFIX}KEYS_FILE is required outside `tokensvc dev`")

    login_port = _port(env, "LOGIN_PORT", 8090)
    issuer_parts = urlsplit(issuer)
    default_login = f"{issuer_parts.scheme}://{issuer_parts.hostname}:{login_port}"
    if issuer_parts.hostname and ":" in issuer_parts.hostname:
        default_login = f"{issuer_parts.scheme}://[{issuer_parts.hostname}]:{login_port}"
    login_url = (_url(env, "LOGIN_URL", ("http", "https")) or default_login).rstrip("/")

    raw_proxies = env.get(PREFIX + "TRUSTED_PROXIES") or ""
    try:
        proxies = tuple(str(n) for n in parse_networks(raw_proxies))
    except ValueError:
        raise ConfigError(
            f"{PREFIX}TRUSTED_PROXIES must be comma-separated IP networks, got {raw_proxies!r}"
        ) from None

    tls_cert, tls_key, tls_ca, cert_header = _tls(env, check_files=signs)

    return Settings(
        issuer=issuer,
        database_url=_url(env, "DATABASE_URL", ("postgres", "postgresql")),
        redis_url=_redis_url(env),
        keys_file=keys_file,
        internal_token=internal_token,
        admin_token=admin_token,
        token_internal_url=(
            _url(env, "TOKEN_INTERNAL_URL", ("http", "https")) or "http://127.0.0.1:8081"
        ).rstrip("/"),
        login_url=login_url,
        host=env.get(PREFIX + "HOST") or "0.0.0.0",  # noqa: S104
        port=port,
        internal_port=_port(env, "INTERNAL_PORT", 8081),
        login_port=login_port,
        workers=_int(env, "WORKERS", 1, minimum=1),
        drain_seconds=_int(env, "DRAIN_SECONDS", 5),
        keys_reload_seconds=_int(env, "KEYS_RELOAD_SECONDS", 60),
        access_token_ttl=_int(env, "ACCESS_TOKEN_TTL", DEFAULT_ACCESS_TOKEN_TTL, minimum=1),
        refresh_token_ttl=_int(env, "REFRESH_TOKEN_TTL", 2_592_000, minimum=1),
        code_ttl=_int(env, "CODE_TTL", 60, minimum=1),
        refresh_grace=_int(env, "REFRESH_GRACE", 5),
        client_cache_ttl=_int(env, "CLIENT_CACHE_TTL", 30),
        log_format=log_format,  # type: ignore[arg-type]
        trusted_proxies=proxies,
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
        tls_client_ca_file=tls_ca,
        client_cert_header=cert_header,
        txn_token_audience=_txn_audience(env.get(PREFIX + "TXN_TOKEN_AUDIENCE")),
        dpop_nonce=_flag(env, "DPOP_NONCE"),
        dev=dev,
    )


def _flag(env: Mapping[str, str], name: str) -> bool:
    """`1` or `0` (unset: 0)."""
    raw = env.get(PREFIX + name, "0") or "0"
    if raw not in ("0", "1"):
        raise ConfigError(f"{PREFIX}{name} must be 0 or 1, got {raw[:20]!r}")
    return raw == "1"


def _txn_audience(raw: str | None) -> str:
    """A URI or URN naming the trust domain (no spaces or control characters)."""
    if not raw:
        return ""
    if len(raw) > 2048 or any(c.isspace() or ord(c) < 0x20 for c in raw) or ":" not in raw:
        raise ConfigError(
            f"{PREFIX}TXN_TOKEN_AUDIENCE must be a URI or URN naming the trust domain, "
            f"got {raw[:80]!r}"
        )
    return raw

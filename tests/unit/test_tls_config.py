"""The TLS settings (RFC 8705; SPEC: Configuration): TOKENSVC_TLS_CERT_FILE and _KEY_FILE
together or not at all, readable files that hold what they should, a header name that comes
with trusted proxies. Each mistake stops the start with one line naming the variable."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.certificates import ca, leaf
from tests.unit.test_config import REQUIRED, config_error, load
from tokensvc import config
from tokensvc.http.tls import server_context


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("tls")
    authority = ca("Config CA")
    cert, key = leaf(
        authority, "127.0.0.1", ips=("127.0.0.1",), eku=ExtendedKeyUsageOID.SERVER_AUTH
    ).write(directory, "server")
    _, other_key = leaf(authority, "other").write(directory, "other")
    (directory / "ca.pem").write_text(authority.pem)
    (directory / "junk.pem").write_text("not a certificate\n")
    return {
        "cert": str(cert),
        "key": str(key),
        "other_key": str(other_key),
        "ca": str(directory / "ca.pem"),
        "junk": str(directory / "junk.pem"),
        "missing": str(directory / "missing.pem"),
    }


def test_unset_means_plain_http_and_no_certificates() -> None:
    s = load()
    assert (s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file, s.client_cert_header) == (
        None,
        None,
        None,
        None,
    )
    assert server_context(s) is None


def test_every_tls_setting_is_read(files: dict[str, str]) -> None:
    s = load(
        TOKENSVC_TLS_CERT_FILE=files["cert"],
        TOKENSVC_TLS_KEY_FILE=files["key"],
        TOKENSVC_TLS_CLIENT_CA_FILE=files["ca"],
        TOKENSVC_CLIENT_CERT_HEADER="X-SSL-Client-Cert",
        TOKENSVC_TRUSTED_PROXIES="10.0.0.0/8",
    )
    assert (s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file) == (
        files["cert"],
        files["key"],
        files["ca"],
    )
    assert s.client_cert_header == "X-SSL-Client-Cert"
    context = server_context(s)
    assert context is not None
    assert context.verify_mode == ssl.CERT_OPTIONAL  # requested, not required
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    without_ca = server_context(s.with_(tls_client_ca_file=None))
    assert without_ca is not None and without_ca.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"TOKENSVC_TLS_CERT_FILE": "cert"}, "TOKENSVC_TLS_CERT_FILE"),
        ({"TOKENSVC_TLS_KEY_FILE": "key"}, "TOKENSVC_TLS_CERT_FILE"),
        ({"TOKENSVC_TLS_CERT_FILE": "missing", "TOKENSVC_TLS_KEY_FILE": "key"}, "TLS_CERT_FILE"),
        ({"TOKENSVC_TLS_CERT_FILE": "cert", "TOKENSVC_TLS_KEY_FILE": "missing"}, "TLS_KEY_FILE"),
        ({"TOKENSVC_TLS_CERT_FILE": "junk", "TOKENSVC_TLS_KEY_FILE": "key"}, "TLS_CERT_FILE"),
        ({"TOKENSVC_TLS_CERT_FILE": "cert", "TOKENSVC_TLS_KEY_FILE": "other_key"}, "TLS_KEY_FILE"),
        ({"TOKENSVC_TLS_CLIENT_CA_FILE": "missing"}, "TOKENSVC_TLS_CLIENT_CA_FILE"),
        ({"TOKENSVC_TLS_CLIENT_CA_FILE": "junk"}, "TOKENSVC_TLS_CLIENT_CA_FILE"),
        ({"TOKENSVC_CLIENT_CERT_HEADER": "X-Client-Cert"}, "TOKENSVC_TRUSTED_PROXIES"),
        (
            {"TOKENSVC_CLIENT_CERT_HEADER": "X Client: Cert", "TOKENSVC_TRUSTED_PROXIES": "::1"},
            "TOKENSVC_CLIENT_CERT_HEADER",
        ),
    ],
)
def test_a_bad_tls_setting_is_one_line_naming_it(
    files: dict[str, str], settings: dict[str, str], named: str
) -> None:
    env = {k: files.get(v, v) if k.endswith("_FILE") else v for k, v in settings.items()}
    message = config_error({**REQUIRED, **env})
    assert named in message, message


def test_the_login_front_end_does_not_open_the_token_services_files() -> None:
    s = config.load(
        {**REQUIRED, "TOKENSVC_TLS_CERT_FILE": "/nope", "TOKENSVC_TLS_KEY_FILE": "/nope"},
        signs=False,
    )
    assert s.tls_cert_file == "/nope"


def test_serve_token_stops_with_one_line_on_an_unreadable_certificate(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSVC_")}
    env.update(
        REQUIRED,
        TOKENSVC_TLS_CERT_FILE=str(tmp_path / "absent.pem"),
        TOKENSVC_TLS_KEY_FILE=str(tmp_path / "absent.key"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "tokensvc", "serve", "token"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "TOKENSVC_TLS_CERT_FILE" in lines[0], result.stderr

"""The `tokensvc` command line as an operator runs it: real subprocesses, a real Postgres
database per test, real Redis, real sockets (SPEC: Command line).

Every failure the SPEC calls bad input must be one line on stderr, exit status 2, and leave
nothing written; every long-running process is killed in `finally`, whatever happens.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from argon2 import PasswordHasher
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from tests.e2e.procs import (
    INTERNAL_TOKEN,
    RUN_TIMEOUT,
    TOKENSVC,
    Proc,
    add_machine_client,
    base_env,
    basic,
    fresh_database,
    http,
    jwt_header,
    query,
    run,
    service_env,
    write_keys,
)
from tests.servers import free_port
from tokensvc.opaque import verify_secret
from tokensvc.signing.keys import keyset_from_jwks

E2E_REDIS_DB = 5  # not 0: other suites share the session's Redis
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"


# --------------------------------------------------------------------------- database


def table_text(url: str, table: str) -> list[str]:
    """Every row of `table`, all columns cast to text: where a plaintext could hide."""
    return [row[0] for row in query(url, f"SELECT t::text FROM {table} t")]  # noqa: S608


@pytest.fixture
def empty_db(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, unmigrated database of its own."""
    with fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def db(empty_db: str) -> str:
    """A fresh database migrated by `tokensvc migrate`."""
    run(["migrate"], base_env(TOKENSVC_DATABASE_URL=empty_db)).ok()
    return empty_db


@pytest.fixture
def env(db: str) -> dict[str, str]:
    return base_env(TOKENSVC_DATABASE_URL=db)


@dataclass
class Populated:
    """A migrated database shared by the bad-input tests: one client, no users. Bad input
    writes nothing, so every test of the module must find it exactly so."""

    db: str
    env: dict[str, str]
    client_id: str

    def assert_unchanged(self) -> None:
        assert client_ids(self.env) == [self.client_id]
        assert [r["client_id"] for r in query(self.db, "SELECT client_id FROM clients")] == [
            self.client_id
        ]
        assert query(self.db, "SELECT sub FROM users") == []


@pytest.fixture(scope="module")
def populated(postgres_admin_url: str) -> Iterator[Populated]:
    with fresh_database(postgres_admin_url) as db:
        env = base_env(TOKENSVC_DATABASE_URL=db)
        run(["migrate"], env).ok()
        client_id = add_machine_client(env, name="Existing")["client_id"]
        populated = Populated(db, env, client_id)
        populated.assert_unchanged()
        yield populated


# --------------------------------------------------------------------------- migrate


def test_migrate_applies_once_then_reports_up_to_date(empty_db: str) -> None:
    env = base_env(TOKENSVC_DATABASE_URL=empty_db)
    first = run(["migrate"], env).ok()
    versions = sorted(p.stem for p in SCHEMA_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    assert versions, "no migrations found in schema/"
    assert first.stdout == ""
    assert "applied" in first.stderr
    for version in versions:
        assert version in first.stderr
    recorded = [r["version"] for r in query(empty_db, "SELECT version FROM schema_migrations")]
    assert sorted(recorded) == versions
    tables = {
        r["tablename"]
        for r in query(empty_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert {"clients", "users", "grants", "refresh_tokens", "schema_migrations"} <= tables

    second = run(["migrate"], env).ok()
    assert second.stdout == ""
    assert second.stderr.strip() == "schema is up to date"
    again = [r["version"] for r in query(empty_db, "SELECT version FROM schema_migrations")]
    assert sorted(again) == versions


def test_migrate_rejected_by_the_server_is_one_line_and_rolled_back(empty_db: str) -> None:
    # A table in the way makes 0001 fail inside its transaction.
    query(empty_db, "CREATE TABLE users (id int)")
    result = run(["migrate"], base_env(TOKENSVC_DATABASE_URL=empty_db))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("tokensvc: migration 0001")
    assert query(empty_db, "SELECT version FROM schema_migrations") == []
    assert query(empty_db, "SELECT to_regclass('clients') AS t")[0]["t"] is None


def test_migrate_check_reports_pending_and_applies_nothing(empty_db: str) -> None:
    env = base_env(TOKENSVC_DATABASE_URL=empty_db)
    line = run(["migrate", "--check"], env).bad_input()
    versions = sorted(p.stem for p in SCHEMA_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    assert line.startswith(f"tokensvc: {len(versions)} migration(s) pending: {versions[0]}")
    assert query(empty_db, "SELECT to_regclass('schema_migrations') AS t")[0]["t"] is None

    run(["migrate"], env).ok()
    assert run(["migrate", "--check"], env).ok().stderr.strip() == "schema is up to date"


def test_migrate_check_waits_for_the_migration_to_land(empty_db: str) -> None:
    """What a pod's init step does while the migration Job runs: wait, then let the pod start."""
    env = base_env(TOKENSVC_DATABASE_URL=empty_db)
    waiting = subprocess.Popen(
        [*TOKENSVC, "migrate", "--check", "--wait", "60"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        assert waiting.poll() is None, "--check --wait gave up while migrations were pending"
        run(["migrate"], env).ok()
        _, err = waiting.communicate(timeout=RUN_TIMEOUT)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert err.splitlines()[0].startswith("waiting: ")
    assert err.splitlines()[-1] == "schema is up to date"


def test_migrate_check_gives_up_on_an_unreachable_database() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    result = run(["migrate", "--check", "--wait", "1"], base_env(TOKENSVC_DATABASE_URL=url))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "tokensvc: postgres is unreachable"


def test_migrate_unreachable_database_is_one_line() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    line = run(["migrate"], base_env(TOKENSVC_DATABASE_URL=url)).bad_input()
    assert "postgres" in line


def test_migrate_needs_a_database_url() -> None:
    assert "TOKENSVC_DATABASE_URL" in run(["migrate"], base_env()).bad_input()


# --------------------------------------------------------------------------- clients


def client_ids(env: dict[str, str]) -> list[str]:
    listing = run(["client", "list"], env).ok().json()
    assert isinstance(listing, list)
    return [c["client_id"] for c in listing]


def test_client_add_confidential_prints_the_secret_once_and_stores_a_hash(
    env: dict[str, str], db: str
) -> None:
    out = add_machine_client(env, "--scope", "api:read", name="Billing")
    assert isinstance(out, dict)
    client_id, secret = out["client_id"], out["client_secret"]
    assert isinstance(secret, str) and len(secret) >= 43
    assert out["name"] == "Billing"
    assert out["grant_types"] == ["client_credentials"]
    assert out["scopes"] == ["api:read"]
    assert out["public"] is False

    rows = query(db, "SELECT * FROM clients")
    assert len(rows) == 1 and rows[0]["client_id"] == client_id
    assert not any(secret in text for text in table_text(db, "clients"))
    assert verify_secret(secret, rows[0]["secret_hash"])

    listing = run(["client", "list"], env).ok()
    assert secret not in listing.stdout
    assert rows[0]["secret_hash"] not in listing.stdout
    (listed,) = listing.json()
    assert listed["client_id"] == client_id
    assert "client_secret" not in listed


def test_client_add_public_has_no_secret(env: dict[str, str], db: str) -> None:
    out = (
        run(
            [
                "client",
                "add",
                "--name",
                "SPA",
                "--public",
                "--grant-type",
                "authorization_code",
                "--redirect-uri",
                "https://x/cb",
            ],
            env,
        )
        .ok()
        .json()
    )
    assert "client_secret" not in out
    assert out["public"] is True
    assert out["token_endpoint_auth_method"] == "none"
    assert out["redirect_uris"] == ["https://x/cb"]
    (row,) = query(db, "SELECT secret_hash FROM clients WHERE client_id = $1", out["client_id"])
    assert row["secret_hash"] is None
    listed = run(["client", "list"], env).ok().json()
    assert [c["client_id"] for c in listed] == [out["client_id"]]
    assert listed[0]["redirect_uris"] == ["https://x/cb"]


def test_client_add_reuse_access_token_is_opt_in(env: dict[str, str], db: str) -> None:
    base = ["client", "add", "--grant-type", "client_credentials", "--scope", "api:read"]
    reusing = run([*base, "--name", "Batch", "--reuse-access-token"], env).ok().json()
    fresh = run([*base, "--name", "Batch 2"], env).ok().json()
    assert reusing["reuse_access_token"] is True and "reuse_access_token" not in fresh
    rows = query(db, "SELECT client_id, reuse_access_token FROM clients")
    assert {r["client_id"]: r["reuse_access_token"] for r in rows} == {
        reusing["client_id"]: True,
        fresh["client_id"]: False,
    }


def test_client_list_empty(env: dict[str, str]) -> None:
    assert run(["client", "list"], env).ok().json() == []


def test_client_remove(env: dict[str, str]) -> None:
    keep = add_machine_client(env, name="Keep")["client_id"]
    gone = add_machine_client(env, name="Gone")["client_id"]
    assert sorted(client_ids(env)) == sorted([keep, gone])

    assert run(["client", "remove", gone], env).ok().json() == {"removed": gone}
    assert client_ids(env) == [keep]

    line = run(["client", "remove", gone], env).bad_input()
    assert gone in line
    run(["client", "remove", "no-such-client"], env).bad_input()
    assert client_ids(env) == [keep]


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--name", "X", "--grant-type", "implicit"], "implicit"),
        (["--grant-type", "client_credentials"], "--name"),
        (["--name", "X"], "--grant-type"),
        (["--name", "X", "--public", "--grant-type", "client_credentials"], "client_credentials"),
        (["--name", "X", "--grant-type", "authorization_code"], "--redirect-uri"),
        (
            [
                "--name",
                "X",
                "--grant-type",
                "authorization_code",
                "--redirect-uri",
                "http://app.example.com/cb",
            ],
            "http",
        ),
        (
            [
                "--name",
                "X",
                "--grant-type",
                "authorization_code",
                "--redirect-uri",
                "https://app.example.com/cb#x",
            ],
            "fragment",
        ),
        (
            ["--name", "X", "--grant-type", "authorization_code", "--redirect-uri", "http://[::1"],
            "redirect URI",
        ),
        (["--name", "X", "--grant-type", "client_credentials", "--scope", 'api"read'], "--scope"),
        (
            ["--name", "X", "--grant-type", "client_credentials", "--auth-method", "jwt"],
            "--auth-method",
        ),
        (["--name", "X", "--grant-type", "client_credentials", "--bogus"], "--bogus"),
    ],
)
def test_client_add_bad_input_writes_nothing(
    populated: Populated, args: list[str], mentions: str
) -> None:
    line = run(["client", "add", *args], populated.env).bad_input()
    assert line.startswith("tokensvc: ")
    assert mentions in line
    populated.assert_unchanged()


@pytest.mark.parametrize(
    "args",
    [
        ["client", "add", "--name", "X", "--grant-type", "client_credentials"],
        ["client", "list"],
        ["client", "remove", "abc"],
        ["user", "add", "--username", "dave", "--password-stdin"],
        ["resource", "add", "--identifier", "https://api.example.com", "--scope", "a"],
        ["resource", "list"],
    ],
)
def test_store_commands_need_a_database_url(populated: Populated, args: list[str]) -> None:
    line = run(args, base_env(), stdin="long enough password\n").bad_input()
    assert "TOKENSVC_DATABASE_URL" in line
    populated.assert_unchanged()


@pytest.mark.parametrize("args", [[], ["client"], ["client", "frobnicate"], ["nonsense"]])
def test_usage_errors_are_one_line(args: list[str]) -> None:
    run(args, base_env()).bad_input()


# --------------------------------------------------------------------------- users


def test_user_add_stores_an_argon2id_hash(env: dict[str, str], db: str) -> None:
    password = "correct horse battery staple"
    result = run(
        [
            "user",
            "add",
            "--username",
            "alice",
            "--password-stdin",
            "--email",
            "alice@example.com",
            "--name",
            "Alice",
        ],
        env,
        stdin=password + "\n",
    )
    out = result.ok().json()
    assert set(out) == {"sub"}
    assert password not in result.stdout + result.stderr

    (row,) = query(db, "SELECT * FROM users")
    assert row["sub"] == out["sub"]
    assert row["username"] == "alice"
    assert row["email"] == "alice@example.com"
    assert row["name"] == "Alice"
    assert row["password_hash"].startswith("$argon2id$")
    assert PasswordHasher().verify(row["password_hash"], password)  # newline stripped
    assert not any(password in text for text in table_text(db, "users"))


def test_user_add_duplicate_username(env: dict[str, str], db: str) -> None:
    first = (
        run(["user", "add", "--username", "bob", "--password-stdin"], env, stdin="first password\n")
        .ok()
        .json()
    )
    line = run(
        ["user", "add", "--username", "bob", "--password-stdin"], env, stdin="second password\n"
    ).bad_input()
    assert "bob" in line
    (row,) = query(db, "SELECT sub, password_hash FROM users")
    assert row["sub"] == first["sub"]
    assert PasswordHasher().verify(row["password_hash"], "first password")


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["--username", "carol", "--password-stdin"], "short\n"),
        (["--username", "carol", "--password-stdin"], ""),
        (["--username", "carol"], "long enough password\n"),
        (["--username", "car ol", "--password-stdin"], "long enough password\n"),
        (["--password-stdin"], "long enough password\n"),
    ],
)
def test_user_add_bad_input_writes_nothing(
    populated: Populated, args: list[str], stdin: str
) -> None:
    run(["user", "add", *args], populated.env, stdin=stdin).bad_input()
    populated.assert_unchanged()


# --------------------------------------------------------------------------- keys


PRIVATE_MEMBER = {"ES256": "d", "EdDSA": "d", "RS256": "p", "PS256": "p"}


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256", "PS256"])
def test_keys_generate(alg: str) -> None:
    jwks = run(["keys", "generate", "--alg", alg], base_env()).ok().json()
    (key,) = jwks["keys"]
    assert "active" not in key  # signing keys carry their schedule (signing.schedule)
    assert key["publish_at"] == key["sign_at"] and abs(key["sign_at"] - time.time()) < 60
    assert key["alg"] == alg
    assert key["use"] == "sig"
    assert isinstance(key["kid"], str) and key["kid"]
    assert PRIVATE_MEMBER[alg] in key  # a private JWKS
    keyset = keyset_from_jwks(jwks)
    assert keyset.kid == key["kid"]
    (public,) = keyset.public_jwks["keys"]
    assert "d" not in public and "p" not in public


def test_keys_generate_defaults_to_es256() -> None:
    (key,) = run(["keys", "generate"], base_env()).ok().json()["keys"]
    assert key["alg"] == "ES256"


@pytest.mark.parametrize("alg", ["HS256", "none", "es256", ""])
def test_keys_generate_bad_alg(alg: str) -> None:
    run(["keys", "generate", "--alg", alg], base_env()).bad_input()


def write_generated(path: Path, alg: str = "ES256") -> dict[str, Any]:
    jwks: dict[str, Any] = run(["keys", "generate", "--alg", alg], base_env()).ok().json()
    path.write_text(json.dumps(jwks))
    path.chmod(0o644)
    return jwks


def test_keys_rotate_schedules_a_new_key_and_retires_the_old(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    (old,) = write_generated(path)["keys"]

    before = int(time.time())
    out = run(["keys", "rotate", str(path)], base_env()).ok().json()
    rotated = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first, new = rotated["keys"]
    # published now, signing one JWKS cache lifetime (300 s) later; the old key stays until
    # its last token (TOKENSVC_ACCESS_TOKEN_TTL, 3600 s) has expired, plus that lifetime
    assert before <= new["publish_at"] <= time.time()
    assert new["sign_at"] == new["publish_at"] + 300
    assert first == {**old, "retire_at": new["sign_at"] + 3600 + 300}
    assert new["kid"] != old["kid"] and new["alg"] == "ES256" and new["use"] == "sig"
    assert out == {
        "kid": new["kid"],
        "publish_at": new["publish_at"],
        "sign_at": new["sign_at"],
        "retire_at": {old["kid"]: first["retire_at"]},
        "pruned": [],
        "keys": 2,
    }
    keyset = keyset_from_jwks(rotated)
    assert keyset.kid == old["kid"]  # until sign_at
    assert keyset.at(new["sign_at"]).signer.kid == new["kid"]
    assert set(keyset.verify_keys) == {old["kid"], new["kid"]}

    env = base_env(TOKENSVC_ACCESS_TOKEN_TTL="600")
    out = run(["keys", "rotate", str(path), "--alg", "EdDSA", "--lead", "0"], env).ok().json()
    keys = json.loads(path.read_text())["keys"]
    assert keys[2]["alg"] == "EdDSA" and out["kid"] == keys[2]["kid"] and out["keys"] == 3
    # with --lead 0 it signs at once (or a second after the first key, if that began this second)
    assert keys[2]["sign_at"] == max(keys[2]["publish_at"], old["sign_at"] + 1)
    assert "sign_at" not in keys[1]  # it never signed: the new key superseded it
    assert keys[1]["retire_at"] == keys[2]["sign_at"] + 600 and keys[0] == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwks.json"]  # no temp files left

    time.sleep(max(0.0, keys[2]["sign_at"] - time.time()))
    run(["keys", "rotate", str(path), "--retire-after", "7"], base_env()).ok()
    keys = json.loads(path.read_text())["keys"]
    assert keys[2]["retire_at"] == keys[3]["sign_at"] + 7 and keys[3]["alg"] == "EdDSA"


def test_keys_rotate_prunes_retired_keys(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    (old,) = write_generated(path)["keys"]
    run(["keys", "rotate", str(path), "--lead", "0", "--retire-after", "0"], base_env()).ok()
    time.sleep(1.1)  # the old key's retire_at passes
    out = run(["keys", "rotate", str(path), "--lead", "0"], base_env()).ok().json()
    assert out["pruned"] == [old["kid"]] and out["keys"] == 2
    assert old["kid"] not in {k["kid"] for k in json.loads(path.read_text())["keys"]}


def test_keys_rotate_reads_files_from_before_schedules(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    legacy = {
        "keys": [
            {**k, "active": True} for k in run(["keys", "generate"], base_env()).ok().json()["keys"]
        ]
    }
    for key in legacy["keys"]:
        del key["publish_at"], key["sign_at"]
    path.write_text(json.dumps(legacy))
    run(["keys", "rotate", str(path)], base_env()).ok()
    old, new = json.loads(path.read_text())["keys"]
    assert "active" not in old and old["sign_at"] == 0 and old["retire_at"] > time.time()
    assert new["sign_at"] > time.time()


@pytest.mark.parametrize(
    "args", [["--lead", "-1"], ["--lead", "soon"], ["--retire-after", "-5"], ["--lead", "1.5"]]
)
def test_keys_rotate_bad_durations_leave_the_file(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "jwks.json"
    write_generated(path)
    before = path.read_bytes()
    run(["keys", "rotate", str(path), *args], base_env()).bad_input()
    assert path.read_bytes() == before


def test_keys_rotate_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    assert str(path) in run(["keys", "rotate", str(path)], base_env()).bad_input()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def _two_active(path: Path) -> bytes:
    """A file from before schedules, with two keys marked active."""
    jwks = run(["keys", "generate"], base_env()).ok().json()
    other = run(["keys", "generate"], base_env()).ok().json()
    keys = [
        {m: v for m, v in k.items() if m not in ("publish_at", "sign_at")} | {"active": True}
        for k in jwks["keys"] + other["keys"]
    ]
    return json.dumps({"keys": keys}).encode()


def _public_only(path: Path) -> bytes:
    jwks = run(["keys", "generate"], base_env()).ok().json()
    (key,) = jwks["keys"]
    key.pop("d")
    return json.dumps(jwks).encode()


def _bad_alg(path: Path) -> bytes:
    jwks = run(["keys", "generate"], base_env()).ok().json()
    jwks["keys"][0]["alg"] = "HS256"
    return json.dumps(jwks).encode()


@pytest.mark.parametrize(
    "make",
    [
        lambda _: b"",
        lambda _: b"not json {",
        lambda _: b"[]",
        lambda _: b'{"keys": []}',
        lambda _: b'{"keys": "nope"}',
        _two_active,
        _public_only,
        _bad_alg,
    ],
    ids=[
        "empty",
        "not-json",
        "list",
        "no-keys",
        "keys-not-list",
        "two-active",
        "public-only",
        "bad-alg",
    ],
)
def test_keys_rotate_malformed_file_is_left_unchanged(tmp_path: Path, make: Any) -> None:
    path = tmp_path / "jwks.json"
    content = make(path)
    path.write_bytes(content)
    path.chmod(0o640)
    run(["keys", "rotate", str(path)], base_env()).bad_input()
    assert path.read_bytes() == content
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwks.json"]


def test_keys_rotate_bad_alg_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    write_generated(path)
    before = path.read_bytes()
    run(["keys", "rotate", str(path), "--alg", "HS256"], base_env()).bad_input()
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- services


def test_serve_token_end_to_end(db: str, redis_url: str, tmp_path: Path) -> None:
    env = base_env(TOKENSVC_DATABASE_URL=db)
    client = add_machine_client(env, "--scope", "api:read")
    client_id, secret = client["client_id"], client["client_secret"]
    keys_file = write_keys(tmp_path)
    keys_file.chmod(0o600)

    serve_env = service_env(
        keys_file,
        TOKENSVC_DATABASE_URL=db,
        TOKENSVC_REDIS_URL=urlunsplit(urlsplit(redis_url)._replace(path=f"/{E2E_REDIS_DB}")),
        TOKENSVC_DRAIN_SECONDS="0",  # no load balancer to wait for (tests/e2e/test_shutdown.py)
    )
    issuer, internal_port = serve_env["TOKENSVC_ISSUER"], serve_env["TOKENSVC_INTERNAL_PORT"]
    service = Proc(["serve", "token"], serve_env, tmp_path)
    wrong = secret[::-1]
    auth, bad_auth = basic(client_id, secret), basic(client_id, wrong)
    try:
        assert service.wait_http(f"{issuer}/healthz").status == 200

        reply = http(f"{issuer}/token", data={"grant_type": "client_credentials"}, headers=auth)
        assert reply.status == 200, reply.body
        assert reply.headers["Cache-Control"] == "no-store"
        tokens = reply.json()
        assert tokens["token_type"] == "Bearer"
        assert tokens["scope"] == "api:read"
        access_token = tokens["access_token"]
        header = jwt_header(access_token)
        assert header["typ"] == "at+jwt" and header["alg"] == "ES256"

        jwks = http(f"{issuer}/jwks.json").json()
        assert header["kid"] in {k["kid"] for k in jwks["keys"]}
        decoded = jwt.decode(access_token, JoseKeySet.import_key_set(jwks), algorithms=["ES256"])
        assert decoded.claims["iss"] == issuer
        assert decoded.claims["client_id"] == client_id

        refused = http(
            f"{issuer}/token", data={"grant_type": "client_credentials"}, headers=bad_auth
        )
        assert refused.status == 401
        assert refused.json()["error"] == "invalid_client"

        ready = http(f"{issuer}/readyz")
        assert ready.status == 200, ready.body

        internal = http(
            f"http://127.0.0.1:{internal_port}/internal/clients/{client_id}",
            headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
        )
        assert internal.status == 200 and internal.json()["client_id"] == client_id
        assert http(f"{issuer}/internal/clients/{client_id}").status == 404

        assert service.stop(signal.SIGTERM) == 0
    finally:
        service.kill()

    stdout, stderr = service.stdout(), service.stderr()
    encoded = [h["Authorization"].removeprefix("Basic ") for h in (auth, bad_auth)]
    for leaked in (secret, wrong, access_token, INTERNAL_TOKEN, *encoded):
        assert leaked not in stdout
        assert leaked not in stderr
    events = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(e, dict) for e in events)
    requests = [e for e in events if e.get("event") == "request"]
    for event in requests:
        assert {"method", "path", "status", "duration_ms"} <= set(event)
        assert isinstance(event["duration_ms"], int | float) and event["duration_ms"] >= 0
    assert [(e["method"], e["path"], e["status"]) for e in requests] == [
        ("GET", "/healthz", 200),
        ("POST", "/token", 200),
        ("GET", "/jwks.json", 200),
        ("POST", "/token", 401),
        ("GET", "/readyz", 200),
        # Route templates, never the path as sent: a path is whatever anyone typed.
        ("GET", "/internal/clients/{client_id}", 200),
        ("GET", "unmatched", 404),  # the internal route does not exist on the public port
    ]
    assert [e.get("client_id") for e in requests[-2:]] == [client_id, None]


@pytest.mark.parametrize("taken", ["public", "internal"])
def test_serve_token_port_in_use_is_one_line(tmp_path: Path, taken: str) -> None:
    keys_file = tmp_path / "jwks.json"
    write_generated(keys_file)
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        busy = occupant.getsockname()[1]
        port = busy if taken == "public" else free_port()
        internal_port = busy if taken == "internal" else free_port()
        env = service_env(
            keys_file, TOKENSVC_PORT=str(port), TOKENSVC_INTERNAL_PORT=str(internal_port)
        )
        result = run(["serve", "token"], env)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("tokensvc: cannot listen") and str(busy) in line
    assert all(isinstance(json.loads(event), dict) for event in result.stdout.splitlines())


@pytest.mark.parametrize(
    ("variable", "url", "store"),
    [
        ("TOKENSVC_DATABASE_URL", "postgresql://u@127.0.0.1:{port}/x", "grants"),
        ("TOKENSVC_REDIS_URL", "redis://127.0.0.1:{port}/0", "codes"),
    ],
)
def test_serve_token_with_a_store_down_starts_not_ready(
    tmp_path: Path, variable: str, url: str, store: str
) -> None:
    """The service starts, says it is not ready, and answers 503, so Kubernetes keeps it out
    of rotation instead of crash-looping it until the store is up."""
    keys_file = tmp_path / "jwks.json"
    write_generated(keys_file)
    env = service_env(
        keys_file,
        TOKENSVC_DRAIN_SECONDS="0",  # no load balancer to wait for
        **{variable: url.format(port=free_port())},
    )
    base = env["TOKENSVC_ISSUER"]
    service = Proc(["serve", "token"], env, tmp_path)
    try:
        assert service.wait_http(f"{base}/healthz").status == 200
        ready = http(f"{base}/readyz")
        assert ready.status == 503
        assert ready.json()["stores"][store] is False
        if store == "grants":  # clients live in Postgres too: nobody can authenticate
            reply = http(
                f"{base}/token",
                data={"grant_type": "client_credentials"},
                headers=basic("a", "b"),
            )
            assert reply.status == 503 and reply.json()["error"] == "temporarily_unavailable"
        assert service.stop(signal.SIGTERM) == 0
    finally:
        service.kill()


CURL_LINE = re.compile(r"^\s*(curl .*/token)\n", re.MULTILINE)


def test_dev_banner_curl_works(tmp_path: Path) -> None:
    port, internal_port = free_port(), free_port()
    env = base_env(
        TOKENSVC_HOST="127.0.0.1",
        TOKENSVC_PORT=str(port),
        TOKENSVC_INTERNAL_PORT=str(internal_port),
        TOKENSVC_LOGIN_PORT=str(free_port()),
    )
    service = Proc(["dev"], env, tmp_path)
    try:
        curl = service.wait_stdout(CURL_LINE).group(1)
        assert f"http://127.0.0.1:{port}/token" in curl
        service.wait_http(f"http://127.0.0.1:{port}/healthz")
        done = subprocess.run(
            ["bash", "-c", curl],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=RUN_TIMEOUT,
        )
        assert done.returncode == 0, done.stderr
        tokens = json.loads(done.stdout)
        assert tokens["token_type"] == "Bearer"
        header = jwt_header(tokens["access_token"])
        jwks = http(f"http://127.0.0.1:{port}/jwks.json").json()
        assert header["kid"] in {k["kid"] for k in jwks["keys"]}
        assert service.stop(signal.SIGINT) == 0
    finally:
        service.kill()
    assert "Traceback" not in service.stderr()
    assert tokens["access_token"] not in service.stdout()


# --------------------------------------------------------------------------- workload identity


def _public_jwks_file(tmp_path: Path) -> tuple[Path, Path]:
    """A private JWKS of ours (`keys generate`) and the public JWKS made from it."""
    private = json.loads(run(["keys", "generate"], {}).ok().stdout)
    public = {"keys": [{k: v for k, v in key.items() if k != "d"} for key in private["keys"]]}
    (tmp_path / "private.json").write_text(json.dumps(private))
    (tmp_path / "public.json").write_text(json.dumps(public))
    return tmp_path / "private.json", tmp_path / "public.json"


def test_federations_are_added_listed_and_removed(
    env: dict[str, str], db: str, tmp_path: Path
) -> None:
    private, public = _public_jwks_file(tmp_path)
    k8s = "https://kubernetes.default.svc"
    added = run(["federation", "add", "--issuer", k8s, "--jwks-file", str(public)], env)
    inline = added.ok().json()
    assert inline["issuer"] == k8s and inline["jwks"]["keys"][0]["kty"] == "EC"
    spire = ["federation", "add", "--issuer", "https://spire.example", "--jwks-uri"]
    remote = run([*spire, "https://spire.example/keys"], env).ok().json()
    assert remote == {"issuer": "https://spire.example", "jwks_uri": "https://spire.example/keys"}
    assert [f["issuer"] for f in run(["federation", "list"], env).ok().json()] == [
        k8s,
        "https://spire.example",
    ]
    # Refused, each one line and nothing written: twice, private keys, no key source.
    refusals = [
        ["federation", "add", "--issuer", k8s, "--jwks-uri", "https://k8s.example/keys"],
        ["federation", "add", "--issuer", "https://x.example", "--jwks-file", str(private)],
        ["federation", "add", "--issuer", "https://x.example"],
        ["federation", "add", "--issuer", "http://x.example", "--jwks-uri", "https://x/keys"],
    ]
    for args in refusals:
        assert run(args, env).returncode == 2, args
    assert len(query(db, "SELECT * FROM federations")) == 2
    assert run(["federation", "remove", k8s], env).ok().json() == {"removed": k8s}
    assert run(["federation", "remove", k8s], env).bad_input().startswith("tokensvc: no federation")


def test_clients_without_a_secret_show_their_binding_never_a_key(
    env: dict[str, str], db: str, tmp_path: Path
) -> None:
    private, public = _public_jwks_file(tmp_path)
    k8s = "https://kubernetes.default.svc"
    run(["federation", "add", "--issuer", k8s, "--jwks-file", str(public)], env).ok()
    machine = ["client", "add", "--name", "svc", "--grant-type", "client_credentials"]
    keyed = run([*machine, "--auth-method", "private_key_jwt", "--jwks-file", str(public)], env)
    keyed_out = keyed.ok().json()
    assert "client_secret" not in keyed_out and keyed_out["jwks_kids"]
    workload = [
        *machine,
        "--auth-method",
        "federated_jwt",
        "--federated-issuer",
        k8s,
        "--federated-subject",
        "system:serviceaccount:payments:*",
    ]
    federated_out = run(workload, env).ok().json()
    assert federated_out["federated_subject"] == "system:serviceaccount:payments:*"
    spiffe = "spiffe://example.org/ns/payments/sa/api"
    mtls = [*machine, "--auth-method", "tls_client_auth", "--tls-san-uri", spiffe]
    assert run(mtls, env).ok().json()["tls_client_auth_san_uri"] == spiffe
    listing = run(["client", "list"], env).ok()
    public_x = json.loads(public.read_text())["keys"][0]["x"]
    assert public_x not in listing.stdout  # key ids and names, never key material
    assert {c["token_endpoint_auth_method"] for c in listing.json()} == {
        "private_key_jwt",
        "federated_jwt",
        "tls_client_auth",
    }
    refusals = {
        "private keys": [*machine, "--auth-method", "private_key_jwt", "--jwks-file", str(private)],
        "no federation": [
            *machine,
            "--auth-method",
            "federated_jwt",
            "--federated-issuer",
            "https://nowhere.example",
            "--federated-subject",
            "x",
        ],
        "client_secret_jwt": [*machine, "--auth-method", "client_secret_jwt"],
        "binding of another method": [*machine, "--tls-san-dns", "a.example"],
    }
    for case, args in refusals.items():
        assert run(args, env).bad_input(), case
    assert len(query(db, "SELECT * FROM clients")) == 3


# --------------------------------------------------------------------------- resources (RFC 8707)

API = "https://api.example.com"
BILLING = "urn:example:billing"


def test_resources_are_added_listed_and_removed(env: dict[str, str], db: str) -> None:
    add = ["resource", "add", "--identifier"]
    orders = [*add, API, "--scope", "orders:read", "--scope", "orders:write"]
    named = run([*orders, "--name", "Orders", "--access-token-ttl", "300"], env).ok().json()
    assert named == {
        "identifier": API,
        "scopes": ["orders:read", "orders:write"],
        "name": "Orders",
        "access_token_ttl": 300,
    }
    bare = run([*add, BILLING, "--scope", "invoices"], env).ok().json()
    assert bare == {
        "identifier": BILLING,
        "scopes": ["invoices"],
        "name": None,
        "access_token_ttl": None,
    }
    assert run(["resource", "list"], env).ok().json() == [named, bare]
    # Refused, each one line and nothing written.
    refusals = {
        "exists": [*add, API, "--scope", "other"],
        "fragment": [*add, "https://x.example/#v1", "--scope", "a"],
        "relative": [*add, "/orders", "--scope", "a"],
        "no scope": [*add, "https://x.example"],
        "the issuer's scope": [*add, "https://x.example", "--scope", "openid"],
        "bad scope": [*add, "https://x.example", "--scope", 'a"b'],
        "ttl 0": [*add, "https://x.example", "--scope", "a", "--access-token-ttl", "0"],
        "ttl too long": [*add, "https://x.example", "--scope", "a", "--access-token-ttl", "86401"],
        "ttl not a number": [*add, "https://x.example", "--scope", "a", "--access-token-ttl", "5m"],
        "no identifier": ["resource", "add", "--scope", "a"],
    }
    for case, args in refusals.items():
        assert run(args, env).bad_input().startswith("tokensvc: "), case
    assert [r["identifier"] for r in query(db, "SELECT identifier FROM resources")] == [
        API,
        BILLING,
    ]
    assert run(["resource", "remove", API], env).ok().json() == {"removed": API}
    assert API in run(["resource", "remove", API], env).bad_input()
    assert run(["resource", "list"], env).ok().json() == [bare]


def test_client_add_names_only_registered_resources(env: dict[str, str], db: str) -> None:
    run(["resource", "add", "--identifier", API, "--scope", "orders:read"], env).ok()
    for unknown in (BILLING, "https://api.example.com/"):  # exact strings
        line = add_machine_client_refused(env, "--resource", API, "--resource", unknown)
        assert f"no resource {unknown!r}" in line
    assert "fragment" in add_machine_client_refused(env, "--resource", API + "#x")
    assert query(db, "SELECT client_id FROM clients") == []

    out = add_machine_client(env, "--resource", API, "--resource", API)
    assert out["resources"] == [API]
    plain = add_machine_client(env, name="Plain")
    assert "resources" not in plain  # shown only when a client has any
    (row,) = query(db, "SELECT resources FROM clients WHERE client_id = $1", out["client_id"])
    assert row["resources"] == [API]
    listed = {c["client_id"]: c.get("resources") for c in run(["client", "list"], env).ok().json()}
    assert listed == {out["client_id"]: [API], plain["client_id"]: None}


def add_machine_client_refused(env: dict[str, str], *flags: str) -> str:
    machine = ["client", "add", "--name", "svc", "--grant-type", "client_credentials"]
    return run([*machine, *flags], env).bad_input()


# --------------------------------------------------------------------------- admin changes


def _audit_lines(stderr: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, stderr.splitlines()) if e.get("audit")]


def test_every_cli_change_writes_one_audit_line_on_stderr(env: dict[str, str]) -> None:
    added = run(["client", "add", "--name", "A", "--grant-type", "client_credentials"], env).ok()
    client = added.json()
    (line,) = _audit_lines(added.stderr)
    assert line["event"] == "client.created" and line["actor"] == "cli"
    assert line["client_id"] == client["client_id"]
    assert client["client_secret"] not in added.stderr

    listed = run(["client", "list"], env).ok()
    assert _audit_lines(listed.stderr) == []  # reads are not changes

    removed = run(["client", "remove", client["client_id"]], env).ok()
    assert [e["event"] for e in _audit_lines(removed.stderr)] == ["client.removed"]
    again = run(["client", "remove", client["client_id"]], env)
    assert again.returncode == 2 and "audit" not in again.stderr


def test_client_rotate_secret_overlaps_for_previous_secret_ttl(
    env: dict[str, str], db: str
) -> None:
    client = add_machine_client(env)
    rotated = run(
        ["client", "rotate-secret", client["client_id"], "--previous-secret-ttl", "600"], env
    ).ok()
    out = rotated.json()
    assert out["client_id"] == client["client_id"]
    assert out["client_secret"] != client["client_secret"]
    assert abs(out["previous_secret_expires_at"] - (time.time() + 600)) < 30
    (line,) = _audit_lines(rotated.stderr)
    assert line["event"] == "client.secret_rotated" and line["previous_secret_ttl"] == 600
    assert out["client_secret"] not in rotated.stderr
    (row,) = query(db, "SELECT * FROM clients")
    assert verify_secret(out["client_secret"], row["secret_hash"])
    assert verify_secret(client["client_secret"], row["previous_secret_hash"])
    assert not any(out["client_secret"] in text for text in table_text(db, "clients"))

    # Without an overlap the replaced secret is gone from the row.
    run(["client", "rotate-secret", client["client_id"]], env).ok()
    (row,) = query(db, "SELECT previous_secret_hash, previous_secret_expires_at FROM clients")
    assert row["previous_secret_hash"] is None and row["previous_secret_expires_at"] is None


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["client", "rotate-secret", "nope"], "no client 'nope'"),
        (["client", "rotate-secret", "ID", "--previous-secret-ttl", "-5"], "must not be negative"),
        (["client", "rotate-secret", "ID", "--previous-secret-ttl", "604801"], "604800"),
    ],
)
def test_client_rotate_secret_bad_input_changes_nothing(
    env: dict[str, str], db: str, args: list[str], words: str
) -> None:
    client = add_machine_client(env)
    args = [client["client_id"] if a == "ID" else a for a in args]
    before = query(db, "SELECT secret_hash FROM clients")
    line = run(args, env).bad_input()
    assert words in line
    assert query(db, "SELECT secret_hash FROM clients") == before


def test_client_add_registers_where_people_go_after_logout(env: dict[str, str], db: str) -> None:
    out = run(
        [
            "client",
            "add",
            "--name",
            "RP",
            "--grant-type",
            "authorization_code",
            "--redirect-uri",
            "https://rp.example/cb",
            "--post-logout-redirect-uri",
            "https://rp.example/bye",
            "--post-logout-redirect-uri",
            "https://rp.example/bye2",
            "--backchannel-logout-uri",
            "https://rp.example/backchannel",
        ],
        env,
    ).ok()
    client_id = out.json()["client_id"]
    (row,) = query(
        db,
        "SELECT post_logout_redirect_uris, backchannel_logout_uri FROM clients "
        "WHERE client_id = $1",
        client_id,
    )
    assert row["post_logout_redirect_uris"] == ["https://rp.example/bye", "https://rp.example/bye2"]
    assert row["backchannel_logout_uri"] == "https://rp.example/backchannel"
    bad = run(
        [
            "client",
            "add",
            "--name",
            "RP",
            "--grant-type",
            "client_credentials",
            "--backchannel-logout-uri",
            "http://rp.example/bc",
        ],
        env,
    ).bad_input()
    assert "--backchannel-logout-uri" in bad

"""The `tokensvc` command line (SPEC: Command line).

Commands a machine reads print one JSON object on stdout; progress and errors go to stderr in
plain words. Bad input: one line on stderr, exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import orjson

from tokensvc import config, logs
from tokensvc.digits import whole_number
from tokensvc.errors import StoreUnavailable
from tokensvc.models import Client, Credentials
from tokensvc.registration import (
    RegistrationError,
    new_federation,
    new_resource,
    new_user,
)
from tokensvc.signing.schedule import JWKS_MAX_AGE

if TYPE_CHECKING:  # imported where used, so commands that need no database stay light
    # (and `serve` imports prometheus_client only after choosing its multiprocess mode)
    from tokensvc.admin.operations import Administration
    from tokensvc.storage.postgres import Postgres

T = TypeVar("T")

EXIT_USAGE = 2


class CommandError(Exception):
    """A one-line failure for the operator (exit 2)."""


def _fail(message: str) -> NoReturn:
    one_line = " ".join(message.split())  # a driver's message may span lines; ours never does
    print(f"tokensvc: {one_line}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _emit(data: object) -> None:
    sys.stdout.write(orjson.dumps(data).decode() + "\n")
    sys.stdout.flush()


def _run(coro: Coroutine[object, object, T]) -> T:
    import uvloop

    return uvloop.run(coro)


def _database_url() -> str:
    url = os.environ.get("TOKENSVC_DATABASE_URL")
    if not url:
        raise CommandError(
            "TOKENSVC_DATABASE_URL is required (the in-memory store exists only inside "
            "`tokensvc dev`)"
        )
    return url


async def _with_postgres(action: Callable[[Postgres], Awaitable[T]]) -> T:
    from tokensvc.storage.postgres import Postgres

    pg = await Postgres.connect(_database_url())
    try:
        return await action(pg)
    finally:
        await pg.close()


async def _administering(action: Callable[[Administration], Awaitable[T]]) -> T:
    """Run a change the way the admin API runs it (`tokensvc.admin.operations`), on Postgres;
    its audit line goes to stderr (stdout carries the command's JSON)."""
    from tokensvc.admin.audit import Audit
    from tokensvc.admin.operations import Administration, Conflict

    _audit_to_stderr()

    async def act(pg: Postgres) -> T:
        admin = Administration(
            clients=pg.clients,
            resources=pg.resources,
            federations=pg.federations,
            grants=pg.grants,
            audit=Audit("cli"),
        )
        try:
            return await action(admin)
        except Conflict as exc:
            raise CommandError(str(exc)) from None

    return await _with_postgres(act)


def _audit_to_stderr() -> None:
    fmt = os.environ.get("TOKENSVC_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
    if fmt == "json":
        logs.configure("json", sys.stderr.buffer, buffered=False)
    else:
        logs.configure("console", sys.stderr)


def _emit_listing(
    read: Callable[[Postgres], Awaitable[Sequence[T]]], view: Callable[[T], dict[str, object]]
) -> None:
    """`client list`, `federation list`, `resource list`: one JSON array, oldest first."""
    _emit([view(item) for item in _run(_with_postgres(read))])


def _remove_one(remove: Callable[[Administration], Awaitable[bool]], what: str, key: str) -> None:
    """`client remove`, `federation remove`, `resource remove`: `{"removed": key}`, or exit 2
    when there is no such `what`."""
    if not _run(_administering(remove)):
        raise CommandError(f"no {what} {key!r}")
    _emit({"removed": key})


def _listen(service: Coroutine[object, object, None]) -> None:
    """Run a service; a listener that cannot bind (port taken, address not local) is a setting
    the operator must fix, so it is one line and exit 2 rather than a traceback. Store failures
    arrive as `StoreUnavailable`, so a bare `OSError` here comes from the listeners."""
    try:
        _run(service)
    except OSError as exc:
        raise CommandError(f"cannot listen: {exc}") from None


# --- commands ----------------------------------------------------------------------------------


def cmd_dev(args: argparse.Namespace) -> None:
    from tokensvc.wiring import dev

    settings = config.load(dev=True)
    logs.configure(settings.log_format)
    _listen(dev.run(settings))


def cmd_serve(args: argparse.Namespace) -> None:
    if args.service == "login":
        from tokensvc.login.serve import run_login_service

        settings = config.load(signs=False)
        logs.configure(settings.log_format)
        _listen(run_login_service(settings))
        return
    settings = config.load()
    logs.configure(settings.log_format)
    if settings.workers > 1:
        _share_metrics_between_workers()  # before prometheus_client is first imported
    from tokensvc.signing.keys import read_keys_file
    from tokensvc.wiring.serve import run_token_service

    assert settings.keys_file is not None
    raw, keys = read_keys_file(settings.keys_file)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the service reloads keys on it
    if settings.workers == 1:
        _listen(run_token_service(settings, keys, keys_raw=raw))
        return
    from tokensvc.workers import supervise

    def worker(ready: Callable[[], None]) -> None:  # in each forked worker process
        try:
            _listen(run_token_service(settings, keys, keys_raw=raw, ready=ready, reuse_port=True))
        except (CommandError, config.ConfigError) as exc:
            _fail(str(exc))
        except StoreUnavailable as exc:
            _fail(f"{exc.store} is unreachable")

    # Workers drain (TOKENSVC_DRAIN_SECONDS), then finish requests in flight (10 s at most).
    status = supervise(settings.workers, worker, stop_timeout=settings.drain_seconds + 15)
    if status:
        raise SystemExit(status)


def _share_metrics_between_workers() -> None:
    """Prometheus multiprocess mode: every worker writes its samples under one directory and
    `/metrics`, whichever worker answers, reports the sum over all of them."""
    import atexit
    import shutil
    import tempfile

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return  # the operator chose a directory (and cleans it between runs)
    directory = tempfile.mkdtemp(prefix="tokensvc-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    parent = os.getpid()

    def remove() -> None:
        if os.getpid() == parent:  # not in a forked worker
            shutil.rmtree(directory, True)

    atexit.register(remove)


def cmd_migrate(args: argparse.Namespace) -> None:
    from tokensvc.storage.migrate import MigrationFailed, migrate

    if args.check:
        _run(_check_schema(_database_url(), args.wait))
        return

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        applied = _run(migrate(_database_url(), progress=progress))
    except MigrationFailed as exc:  # rolled back: the files before it stay applied
        raise CommandError(str(exc)) from None
    print(
        f"applied {len(applied)} migration(s)" if applied else "schema is up to date",
        file=sys.stderr,
    )


async def _check_schema(dsn: str, wait: float) -> None:
    """Exit 0 once nothing is pending, polling for up to `wait` seconds: a pod's init step
    that holds it back until the migration Job has put its schema in place."""
    from tokensvc.storage.migrate import pending

    deadline = time.monotonic() + wait
    said = 0.0
    while True:
        try:
            versions = await pending(dsn)
        except StoreUnavailable:
            reason = "postgres is unreachable"
        else:
            if not versions:
                print("schema is up to date", file=sys.stderr)
                return
            reason = f"{len(versions)} migration(s) pending: {', '.join(versions)}"
        now = time.monotonic()
        if now >= deadline:
            raise CommandError(reason)
        if now - said >= 10:
            print(f"waiting: {reason}", file=sys.stderr, flush=True)
            said = now
        await asyncio.sleep(min(2.0, deadline - now))


def _client_view(client: Client) -> dict[str, object]:
    from tokensvc.http.internal import client_view

    return client_view(client) | {"rate_limit": client.rate_limit, "rate_burst": client.rate_burst}


def _jwks_file(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise CommandError(f"cannot read --jwks-file {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise CommandError(f"--jwks-file {path} is not JSON") from None
    if not isinstance(data, dict):
        raise CommandError(f"--jwks-file {path} is not a JWK Set")
    return data


def cmd_client_add(args: argparse.Namespace) -> None:
    credentials = Credentials(
        jwks=_jwks_file(args.jwks_file),
        jwks_uri=args.jwks_uri,
        federated_issuer=args.federated_issuer,
        federated_subject=args.federated_subject,
        tls_subject_dn=args.tls_subject_dn,
        tls_san_dns=args.tls_san_dns,
        tls_san_uri=args.tls_san_uri,
    )
    from tokensvc.admin.operations import ClientFields

    fields = ClientFields(
        name=args.name,
        grant_types=args.grant_type,
        redirect_uris=args.redirect_uri or (),
        scope_list=args.scope or (),
        public=args.public,
        auth_method=args.auth_method,
        require_consent=args.require_consent,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        credentials=credentials,
        resources=args.resource or (),
        dpop_bound=args.dpop_bound,
        require_par=args.require_par,
        reuse_access_token=args.reuse_access_token,
        post_logout_redirect_uris=args.post_logout_redirect_uri or (),
        backchannel_logout_uri=args.backchannel_logout_uri,
    )
    client, secret = _run(_administering(lambda admin: admin.create_client(fields)))
    out = _client_view(client)
    if secret is not None:
        out["client_secret"] = secret
    _emit(out)


def cmd_client_rotate_secret(args: argparse.Namespace) -> None:
    """A new secret, printed once; the old one keeps working `--previous-secret-ttl` seconds
    (admin API: `POST /admin/clients/{id}/secret`)."""

    async def rotate(admin: Administration) -> tuple[Client, str] | None:
        return await admin.rotate_secret(args.client_id, args.previous_secret_ttl)

    rotated = _run(_administering(rotate))
    if rotated is None:
        raise CommandError(f"no client {args.client_id!r}")
    client, secret = rotated
    out: dict[str, object] = {"client_id": client.client_id, "client_secret": secret}
    if client.previous_secret_expires_at is not None:
        out["previous_secret_expires_at"] = int(client.previous_secret_expires_at)
    _emit(out)


def cmd_client_list(args: argparse.Namespace) -> None:
    _emit_listing(lambda pg: pg.clients.list(), _client_view)


def cmd_client_remove(args: argparse.Namespace) -> None:
    _remove_one(lambda admin: admin.remove_client(args.client_id), "client", args.client_id)


def cmd_federation_add(args: argparse.Namespace) -> None:
    federation = new_federation(
        issuer=args.issuer, jwks=_jwks_file(args.jwks_file), jwks_uri=args.jwks_uri
    )
    from tokensvc.admin.metadata import federation_view

    _run(_administering(lambda admin: admin.add_federation(federation)))
    _emit(federation_view(federation))


def cmd_federation_list(args: argparse.Namespace) -> None:
    from tokensvc.admin.metadata import federation_view

    _emit_listing(lambda pg: pg.federations.list(), federation_view)


def cmd_federation_remove(args: argparse.Namespace) -> None:
    _remove_one(lambda admin: admin.remove_federation(args.issuer), "federation", args.issuer)


def cmd_resource_add(args: argparse.Namespace) -> None:
    resource = new_resource(
        identifier=args.identifier,
        scopes=args.scope,
        name=args.name,
        access_token_ttl=args.access_token_ttl,
    )
    from tokensvc.admin.metadata import resource_view

    _run(_administering(lambda admin: admin.add_resource(resource)))
    _emit(resource_view(resource))


def cmd_resource_list(args: argparse.Namespace) -> None:
    from tokensvc.admin.metadata import resource_view

    _emit_listing(lambda pg: pg.resources.list(), resource_view)


def cmd_resource_remove(args: argparse.Namespace) -> None:
    """Every running replica stops issuing tokens for it within a second (the change feed).
    Tokens issued before are not revoked: they expire as they would have."""
    _remove_one(lambda admin: admin.remove_resource(args.identifier), "resource", args.identifier)


def cmd_user_add(args: argparse.Namespace) -> None:
    if not args.password_stdin:
        raise CommandError("--password-stdin is required (passwords are never arguments)")
    password = sys.stdin.readline().rstrip("\r\n")
    user = new_user(username=args.username, password=password, email=args.email, name=args.name)

    async def add(pg: Postgres) -> bool:
        return bool(await pg.users.add(user))

    if not _run(_with_postgres(add)):
        raise CommandError(f"username {args.username!r} is taken")
    _emit({"sub": user.sub})


def cmd_keys_generate(args: argparse.Namespace) -> None:
    from tokensvc.signing.keyfile import generate_jwks

    try:
        _emit(generate_jwks(args.alg, now=time.time()))
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    """Schedule a new key (signing.schedule): published now, signing after `--lead`; the keys
    it replaces retire once the tokens they signed have expired."""
    from tokensvc.signing.keyfile import rotate_jwks, write_private_jwks

    # The longest-lived token a replaced key may have signed (access and ID tokens alike).
    token_ttl = config._int(
        os.environ, "ACCESS_TOKEN_TTL", config.DEFAULT_ACCESS_TOKEN_TTL, minimum=1
    )
    path = Path(args.file)
    try:
        new, rotation = rotate_jwks(
            orjson.loads(path.read_bytes()),
            args.alg,
            now=time.time(),
            lead=args.lead,
            token_ttl=token_ttl,
            retire_after=args.retire_after,
        )
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}") from None
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise CommandError(f"{path}: {exc}") from None
    try:
        write_private_jwks(path, new)
    except OSError as exc:
        raise CommandError(f"{path}: cannot write: {exc.strerror}") from None
    _emit(
        {
            "kid": rotation.new.kid,
            "publish_at": int(rotation.new.publish_at),
            "sign_at": int(rotation.new.sign_at or 0),
            "retire_at": {kid: int(at) for kid, at in rotation.retired.items()},
            "pruned": list(rotation.pruned),
            "keys": len(new["keys"]),
        }
    )


def cmd_purge(args: argparse.Namespace) -> None:
    """Retention (tokensvc.storage.purge): progress on stderr, one JSON summary on stdout."""
    from tokensvc.storage.purge import PurgeReport, Retention, purge

    retention = Retention.from_env(os.environ)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    async def run(pg: Postgres) -> PurgeReport:
        return await purge(
            pg,
            retention,
            time.time(),
            batch_size=args.batch_size,
            max_seconds=args.max_seconds,
            dry_run=args.dry_run,
            progress=progress,
        )

    _emit(_run(_with_postgres(run)).as_json())


def _batch_size(raw: str) -> int:
    from tokensvc.storage.purge import MAX_BATCH_SIZE

    value = whole_number(raw)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}")
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_BATCH_SIZE}, got {value}")
    return value


def _seconds(raw: str) -> int:
    value = whole_number(raw, signed=True)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected whole seconds, got {raw!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


# --- parser ------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the one-line `tokensvc: ...` every other failure is
    (argparse's default prints the whole usage block first). Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        _fail(
            f"{self.prog.removeprefix('tokensvc').strip() or 'usage'}: {message} "
            f"(see {self.prog} --help)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tokensvc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "dev", help="token service in one process, in memory, with demo data"
    ).set_defaults(func=cmd_dev)
    serve = sub.add_parser("serve", help="run a service")
    serve.add_argument("service", choices=["token", "login"])
    serve.set_defaults(func=cmd_serve)
    mig = sub.add_parser("migrate", help="apply schema/ to TOKENSVC_DATABASE_URL")
    mig.add_argument(
        "--check",
        action="store_true",
        help="apply nothing; exit 0 when the schema is current, 2 when not",
    )
    mig.add_argument(
        "--wait",
        type=_seconds,
        default=0,
        metavar="SECONDS",
        help="with --check: keep checking this long before giving up",
    )
    mig.set_defaults(func=cmd_migrate)

    client = sub.add_parser("client", help="manage clients").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    add = client.add_parser("add", help="register a client; prints its secret once")
    add.add_argument("--name", required=True)
    add.add_argument("--grant-type", action="append", required=True)
    add.add_argument("--redirect-uri", action="append")
    add.add_argument("--scope", action="append")
    add.add_argument("--public", action="store_true")
    add.add_argument("--auth-method")
    add.add_argument(
        "--require-consent",
        action="store_true",
        help="ask people to consent before the client gets their data",
    )
    add.add_argument(
        "--dpop-bound",
        action="store_true",
        help="every token request must carry a DPoP proof (RFC 9449 §5.2)",
    )
    add.add_argument(
        "--require-par",
        action="store_true",
        help="authorization requests only through /par (RFC 9126 §6)",
    )
    add.add_argument(
        "--reuse-access-token",
        action="store_true",
        help="client_credentials may answer the still-valid bearer token last issued for the "
        "same scope and audience while half its lifetime is left (off by default)",
    )
    add.add_argument(
        "--rate-limit",
        type=float,
        metavar="R",
        help="requests per second the client may make at /token (default: no limit)",
    )
    add.add_argument(
        "--rate-burst",
        type=int,
        metavar="B",
        help="bucket size: requests allowed at once (default: 1 s worth)",
    )
    for flag, meaning in (
        ("--jwks-file", "private_key_jwt, self_signed_tls_client_auth: the client's public JWKS"),
        ("--jwks-uri", "private_key_jwt, self_signed_tls_client_auth: where its JWKS is"),
        ("--federated-issuer", "federated_jwt: the federation issuer of its workload tokens"),
        ("--federated-subject", "federated_jwt: their sub, exact or with * (one segment)"),
        ("--tls-subject-dn", "tls_client_auth: the certificate's subject DN"),
        ("--tls-san-dns", "tls_client_auth: a DNS name of the certificate"),
        ("--tls-san-uri", "tls_client_auth: a URI of the certificate (a SPIFFE ID)"),
    ):
        add.add_argument(flag, help=meaning)
    add.add_argument(
        "--resource",
        action="append",
        metavar="URI",
        help="a registered resource (RFC 8707) it may get tokens for; repeatable",
    )
    add.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        metavar="URI",
        help="where people may be sent after signing out (exact match); repeatable",
    )
    add.add_argument(
        "--backchannel-logout-uri", metavar="URI", help="where logout tokens are posted"
    )
    add.set_defaults(func=cmd_client_add)
    client.add_parser("list").set_defaults(func=cmd_client_list)
    rotate = client.add_parser("rotate-secret", help="issue a new secret; prints it once")
    rotate.add_argument("client_id")
    rotate.add_argument(
        "--previous-secret-ttl",
        type=_seconds,
        default=0,
        metavar="SECONDS",
        help="the old secret keeps working this long (default 0: it stops now)",
    )
    rotate.set_defaults(func=cmd_client_rotate_secret)
    remove = client.add_parser("remove")
    remove.add_argument("client_id")
    remove.set_defaults(func=cmd_client_remove)

    federation = sub.add_parser(
        "federation", help="trusted issuers of workload tokens"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    fadd = federation.add_parser("add", help="trust an issuer (keys from a file or a URL)")
    fadd.add_argument("--issuer", required=True)
    keys_from = fadd.add_mutually_exclusive_group(required=True)
    keys_from.add_argument("--jwks-file")
    keys_from.add_argument("--jwks-uri")
    fadd.set_defaults(func=cmd_federation_add)
    federation.add_parser("list").set_defaults(func=cmd_federation_list)
    fremove = federation.add_parser("remove")
    fremove.add_argument("issuer")
    fremove.set_defaults(func=cmd_federation_remove)

    resource = sub.add_parser(
        "resource", help="resource servers (APIs) tokens can be issued for (RFC 8707)"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    radd = resource.add_parser("add", help="register a resource and the scopes it owns")
    radd.add_argument(
        "--identifier",
        required=True,
        metavar="URI",
        help="an absolute URI without a fragment; its tokens' aud",
    )
    radd.add_argument("--scope", action="append", required=True, help="a scope it owns; repeatable")
    radd.add_argument("--name", help="what people see it called")
    radd.add_argument(
        "--access-token-ttl",
        type=_seconds,
        metavar="SECONDS",
        help="its access tokens live at most this long (default: TOKENSVC_ACCESS_TOKEN_TTL)",
    )
    radd.set_defaults(func=cmd_resource_add)
    resource.add_parser("list", help="every resource, oldest first").set_defaults(
        func=cmd_resource_list
    )
    rremove = resource.add_parser("remove", help="stop issuing tokens for a resource")
    rremove.add_argument("identifier", metavar="URI")
    rremove.set_defaults(func=cmd_resource_remove)

    user = sub.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    uadd = user.add_parser("add", help="create a user (argon2id); prints its sub")
    uadd.add_argument("--username", required=True)
    uadd.add_argument("--password-stdin", action="store_true")
    uadd.add_argument("--email")
    uadd.add_argument("--name")
    uadd.set_defaults(func=cmd_user_add)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    gen = keys.add_parser("generate", help="print a new private JWKS")
    gen.add_argument("--alg", default="ES256")
    gen.set_defaults(func=cmd_keys_generate)
    rot = keys.add_parser("rotate", help="schedule a new signing key in a JWKS file")
    rot.add_argument("file")
    rot.add_argument("--alg", help="the new key's alg (default: the signing key's)")
    rot.add_argument(
        "--lead",
        type=_seconds,
        default=JWKS_MAX_AGE,
        metavar="SECONDS",
        help="publish now, sign after this long (default: the JWKS cache "
        f"lifetime, {JWKS_MAX_AGE})",
    )
    rot.add_argument(
        "--retire-after",
        type=_seconds,
        metavar="SECONDS",
        help="unpublish the replaced keys this long after the new one signs "
        "(default: TOKENSVC_ACCESS_TOKEN_TTL + lead)",
    )
    rot.set_defaults(func=cmd_keys_rotate)

    pur = sub.add_parser("purge", help="delete expired refresh tokens and finished grants")
    pur.add_argument(
        "--batch-size",
        type=_batch_size,
        default=1000,
        metavar="N",
        help="rows per transaction (default 1000)",
    )
    pur.add_argument(
        "--max-seconds",
        type=_seconds,
        metavar="S",
        help="start no batch after this long; the next run goes on",
    )
    pur.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
    )
    pur.set_defaults(func=cmd_purge)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CommandError, config.ConfigError, RegistrationError) as exc:
        _fail(str(exc))
    except StoreUnavailable as exc:
        _fail(f"{exc.store} is unreachable")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

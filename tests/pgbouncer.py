"""A throwaway PgBouncer in transaction mode in front of a test Postgres.

Like the servers of `tests.servers`: a free loopback port, a temporary directory holding the
generated config and userlist, torn down by `close()` (and at interpreter exit). The pool is
deliberately tiny (`pool_size` server connections per database and user), so many client
connections share few server connections and a statement that relies on session state meets
another client's session.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.servers import (
    HOST,
    _port_in_use,
    _ProcessServer,
    _unprivileged_user,
    find_binary,
)

__all__ = ["PgBouncerServer"]


class PgBouncerServer(_ProcessServer):
    """PgBouncer (`pool_mode = transaction`) for every database of the Postgres at
    `postgres_url`, which must accept its user without a password (as `PostgresServer` does).
    `url(database)` is the address clients use; `admin(command)` runs a console command.
    `stop()` sends SIGTERM, which (since 1.18) closes everything at once; SIGINT would wait for
    the clients."""

    def __init__(self, postgres_url: str, pool_size: int = 2, port: int | None = None) -> None:
        super().__init__(port)
        target = urlsplit(postgres_url)
        self.user = target.username or "postgres"
        self._backend = (target.hostname or HOST, target.port or 5432)
        self.pool_size = pool_size
        self.url = self.url_for(target.path.lstrip("/") or "postgres")
        self._run_as = _unprivileged_user()  # PgBouncer refuses to run as root

    def url_for(self, database: str) -> str:
        return urlunsplit(("postgresql", f"{self.user}@{HOST}:{self.port}", f"/{database}", "", ""))

    def via(self, postgres_database_url: str) -> str:
        """The PgBouncer address of the database a direct Postgres URL names."""
        return self.url_for(urlsplit(postgres_database_url).path.lstrip("/"))

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "pgbouncer.log"

    def _make_dir(self) -> Path:
        path = super()._make_dir()
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        return path

    def _write_config(self) -> Path:
        assert self.dir is not None
        host, port = self._backend
        (self.dir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        config = self.dir / "pgbouncer.ini"
        config.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={host} port={port}",
                    "[pgbouncer]",
                    f"listen_addr = {HOST}",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.dir / 'userlist.txt'}",
                    f"admin_users = {self.user}",
                    "pool_mode = transaction",
                    f"default_pool_size = {self.pool_size}",
                    "min_pool_size = 0",
                    "reserve_pool_size = 0",
                    "max_client_conn = 500",
                    # A client waits for a server connection at most this long, then gets an error.
                    "query_wait_timeout = 20",
                    f"logfile = {self.log_path}",
                    f"pidfile = {self.dir / 'pgbouncer.pid'}",
                    "",
                ]
            )
        )
        return config

    def _start(self) -> None:
        binary = find_binary("pgbouncer", "pgbouncer")
        config = self._write_config()
        user = self._run_as
        self._proc = subprocess.Popen(
            [binary, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
        self._wait_ready("pgbouncer", lambda: _port_in_use(self.port), waiting_for="listen")

    def admin(self, command: str) -> list[dict[str, str]]:
        """A console command (`SHOW POOLS`, ...): its rows. The console speaks only the simple
        query protocol, so this goes through psql rather than asyncpg."""
        psql = find_binary("psql", "postgresql-client")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        done = subprocess.run(
            [
                psql,
                "-X",
                "--csv",
                "-h",
                HOST,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "pgbouncer",
                "-c",
                command,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command}: {done.stderr.strip()}")
        header, *rows = done.stdout.splitlines()
        names = header.split(",")
        return [dict(zip(names, row.split(","), strict=False)) for row in rows]

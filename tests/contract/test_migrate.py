"""`migrate`: applies `schema/` once, in order, concurrently safe, all-or-nothing per file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.servers import create_database_async
from tokensvc.storage.migrate import MigrationFailed, default_schema_dir, migrate, migration_files

REPO_SCHEMA = Path(__file__).resolve().parents[2] / "schema"
TABLES = [
    "changes",
    "clients",
    "consents",
    "federations",
    "grants",
    "logout_deliveries",
    "refresh_tokens",
    "resources",
    "schema_migrations",
    "users",
]
# Every migration in schema/, in order: the suite follows the schema as it grows.
VERSIONS = [version for version, _ in migration_files(REPO_SCHEMA)]


async def tables(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' ORDER BY table_name"
        )
        return [row["table_name"] for row in rows]
    finally:
        await conn.close()


async def versions(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [row["version"] for row in rows]
    finally:
        await conn.close()


def test_default_schema_dir_is_the_top_level_schema() -> None:
    assert default_schema_dir() == REPO_SCHEMA
    assert (REPO_SCHEMA / "0001_initial.sql").is_file()


async def test_migrate_applies_once_and_reports_progress(postgres_admin_url: str) -> None:
    dsn = await create_database_async(postgres_admin_url, "migrate_once")
    said: list[str] = []
    assert VERSIONS[:2] == ["0001_initial", "0002_login"]
    assert await migrate(dsn, progress=said.append) == VERSIONS
    assert said == [f"applying {version}" for version in VERSIONS]
    assert await tables(dsn) == TABLES

    said.clear()
    assert await migrate(dsn, progress=said.append) == []
    assert said == []
    assert await versions(dsn) == VERSIONS


async def test_concurrent_migrations_apply_each_file_once(postgres_admin_url: str) -> None:
    dsn = await create_database_async(postgres_admin_url, "migrate_concurrent")
    results = await asyncio.gather(*(migrate(dsn) for _ in range(4)))
    assert sorted(v for result in results for v in result) == VERSIONS
    assert await versions(dsn) == VERSIONS


async def test_failed_migration_rolls_back_and_is_retried(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    dsn = await create_database_async(postgres_admin_url, "migrate_failure")
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first (id int PRIMARY KEY);\n")
    (tmp_path / "0002_second.sql").write_text(
        "CREATE TABLE second (id int);\nINSERT INTO nowhere VALUES (1);\n"
    )
    (tmp_path / "README.md").write_text("not a migration")

    with pytest.raises(MigrationFailed) as caught:
        await migrate(dsn, tmp_path)
    assert caught.value.version == "0002_second"
    assert await versions(dsn) == ["0001_first"]
    assert await tables(dsn) == ["first", "schema_migrations"]  # no half of 0002

    (tmp_path / "0002_second.sql").write_text("CREATE TABLE second (id int);\n")
    (tmp_path / "0003_third.sql").write_text("ALTER TABLE second ADD COLUMN note text;\n")
    assert await migrate(dsn, tmp_path) == ["0002_second", "0003_third"]
    assert await versions(dsn) == ["0001_first", "0002_second", "0003_third"]


async def test_two_files_with_one_number_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="0001"):
        await migrate("postgresql://unused", tmp_path)

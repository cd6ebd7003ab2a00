"""Re-reading the keys file while running: good files are taken, bad ones are logged and the
keys in use stay (never a crash, never an empty JWKS)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from tokensvc.signing.keyfile import generate_jwks, rotated
from tokensvc.signing.keys import KeySet, parse_keys
from tokensvc.signing.reload import KeysReloader

T = 1_800_000_000


class Applied:
    def __init__(self) -> None:
        self.keys: list[KeySet] = []

    def __call__(self, keys: KeySet) -> None:
        self.keys.append(keys)


def setup(tmp_path: Path, interval: float = 0) -> tuple[Path, bytes, KeysReloader, Applied]:
    path = tmp_path / "jwks.json"
    raw = orjson.dumps(generate_jwks("ES256", now=T - 10))
    path.write_bytes(raw)
    applied = Applied()
    reloader = KeysReloader(
        path, parse_keys(raw), applied, loaded=raw, interval=interval, clock=lambda: T
    )
    return path, raw, reloader, applied


def events(log_sink, mark: int, name: str) -> list[dict[str, object]]:
    return [e for e in log_sink.events(mark) if e.get("event") == name]


async def test_unchanged_file_is_not_reloaded(tmp_path: Path, log_sink) -> None:
    _, _, reloader, applied = setup(tmp_path)
    mark = log_sink.mark()
    assert await reloader.reload("SIGHUP") is False
    assert applied.keys == []
    assert events(log_sink, mark, "keys file unchanged")


async def test_rotated_file_is_taken(tmp_path: Path, log_sink) -> None:
    path, raw, reloader, applied = setup(tmp_path)
    new = rotated(orjson.loads(raw), now=T, lead=0)
    path.write_bytes(orjson.dumps(new))
    mark = log_sink.mark()
    assert await reloader.reload("SIGHUP") is True
    log_sink.assert_clean(mark, {k["d"] for k in new["keys"]})  # never key material
    (keys,) = applied.keys
    assert len(keys.at(T).public_jwks["keys"]) == 2
    (event,) = events(log_sink, mark, "keys reloaded")
    assert event["signing_kid"] == keys.at(T).signer.kid


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage", b'{"keys": []}', b'{"keys": [{"kid": "x", "alg": "ES256"}]}', None],
    ids=["empty", "not-json", "no-keys", "bad-key", "missing"],
)
async def test_bad_file_keeps_the_keys_in_use(
    tmp_path: Path, log_sink, content: bytes | None
) -> None:
    path, _, reloader, applied = setup(tmp_path)
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    mark = log_sink.mark()
    assert await reloader.reload("SIGHUP") is False
    assert applied.keys == []
    (event,) = events(log_sink, mark, "keys reload failed; keeping the keys in use")
    assert event["level"] == "warning" and event["error"]


async def test_timer_reloads_without_a_signal(tmp_path: Path) -> None:
    path, raw, reloader, applied = setup(tmp_path, interval=0.05)
    task = asyncio.create_task(reloader.run())
    try:
        path.write_bytes(orjson.dumps(rotated(orjson.loads(raw), now=T, lead=0)))
        for _ in range(100):
            if applied.keys:
                break
            await asyncio.sleep(0.02)
        assert len(applied.keys) == 1
        # the same bad content is reported once by the timer, not every interval
        path.write_bytes(b"garbage")
        await asyncio.sleep(0.3)
        assert len(applied.keys) == 1
        reloader.request()  # SIGHUP
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_dropping_a_published_key_is_warned_about(tmp_path: Path, log_sink) -> None:
    path, _, reloader, applied = setup(tmp_path)
    path.write_bytes(orjson.dumps(generate_jwks("ES256", now=T)))
    assert applied.keys == []  # a different key entirely
    mark = log_sink.mark()
    assert await reloader.reload("SIGHUP") is True
    assert events(log_sink, mark, "keys reload drops published keys")

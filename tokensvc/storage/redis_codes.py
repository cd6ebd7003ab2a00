"""Authorization codes in Redis: one key per code hash, consumed by one Lua script call (on a
single server, a master behind Sentinel, or a Redis Cluster).

The script reads the code and overwrites it with a "used" marker naming its grant in one
atomic step, so exactly one of N concurrent exchanges gets the record and a later replay still
learns which grant to revoke (RFC 6749 §4.1.2). One round trip per exchange.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from tokensvc.errors import StoreUnavailable
from tokensvc.models import CodeRecord, CodeReplayed
from tokensvc.redis_client import RedisClient, RedisStore, connect, is_cluster
from tokensvc.storage.batch import batched_or_one
from tokensvc.storage.codec import dump_code, load_code
from tokensvc.storage.protocols import USED_CODE_MEMORY

KEY_PREFIX = "tokensvc:code:"
_USED = b"U:"

# KEYS: the code keys of one batch; ARGV[1] seconds to remember a used code. Each key is read
# and, when live, replaced by its "used" marker; the script as a whole is atomic, so every key
# is consumed exactly once however the exchanges of one code are spread over batches.
_CONSUME = """
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if not v then
    out[i] = false
  else
    if string.sub(v, 1, 2) ~= 'U:' then
      local nl = string.find(v, '\\n', 1, true)
      redis.call('SET', key, 'U:' .. string.sub(v, 1, nl - 1), 'EX', ARGV[1])
    end
    out[i] = v
  end
end
return out
"""


class RedisCodes(RedisStore):
    def __init__(self, client: RedisClient) -> None:
        super().__init__(client)
        self._consume: Any = client.register_script(_CONSUME)
        # Exchanges that arrive together share one script call: one round trip for the batch.
        # On a cluster each code is its own call: a script may only touch one hash slot, and
        # one code's key is one slot (its read and its "used" marker are one key).
        self.batchers, self._submit = batched_or_one(
            "consume", self._consume_many, self._consume_one, batch=not is_cluster(client)
        )

    @classmethod
    def from_url(cls, url: str) -> RedisCodes:
        return cls(connect(url))

    async def put(self, code_hash: bytes, record: CodeRecord, ttl: int) -> None:
        value = record.grant.grant_id.encode() + b"\n" + dump_code(record)
        try:
            await self._redis.set(KEY_PREFIX + code_hash.hex(), value, ex=ttl)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", exc) from exc

    async def _consume_many(self, code_hashes: list[bytes]) -> list[bytes | None]:
        keys = [KEY_PREFIX + h.hex() for h in code_hashes]
        try:
            return list(await self._consume(keys=keys, args=[USED_CODE_MEMORY]))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", exc) from exc

    async def _consume_one(self, code_hash: bytes) -> bytes | None:
        (raw,) = await self._consume_many([code_hash])
        return raw

    async def consume(self, code_hash: bytes) -> CodeRecord | CodeReplayed | None:
        raw = await self._submit(code_hash)
        if raw is None:
            return None
        if raw.startswith(_USED):
            return CodeReplayed(raw[len(_USED) :].decode())
        return load_code(raw[raw.index(b"\n") + 1 :])

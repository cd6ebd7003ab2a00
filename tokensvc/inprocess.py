"""What every in-memory backend shares (the embedded default of `tokensvc dev`)."""

from __future__ import annotations


class InProcess:
    """A store that lives in this process: it always answers, and holds nothing to close.
    Its state is lost when the process exits and is never shared with another replica."""

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

"""A minimal HTTP/1.1 keep-alive client connection for the Python load generator.

aiohttp's client costs about 50 µs of CPU per request, which on a 2-core machine is taken
from Redis and Postgres (they share the generator's core). This one writes a request built
from pre-encoded parts and reads the response with `Content-Length` or chunked framing: about
11 µs per request on uvloop in a closed loop. It speaks only what a token endpoint answers
(no 1xx, no trailers, no compression); `Connection: close` or EOF ends the connection.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


class ConnectionLost(Exception):
    """The server closed the connection (or it broke) before the response was complete."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    path: str
    tls: bool
    host_header: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(parts.hostname, port, path, tls, parts.netloc)

    def request_head(self) -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
        ).encode()


def build_request(head: bytes, auth: str, body: str, dpop: str = "") -> bytes:
    """One POST from the pre-encoded head, a Basic credential (or ""), a form body and a DPoP
    proof (or ""): a request line's fields (benchmarks.prepare.Line)."""
    data = body.encode()
    parts = [head]
    if auth:
        parts.append(b"Authorization: Basic " + auth.encode() + b"\r\n")
    if dpop:
        parts.append(b"DPoP: " + dpop.encode() + b"\r\n")
    parts.append(b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return b"".join(parts)


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._need = -1  # body bytes still expected; -1: headers not parsed yet
        self._chunked = False
        self._close_after = False
        self._header_end = 0

    @classmethod
    async def open(cls, endpoint: Endpoint, tls: ssl.SSLContext | None = None) -> HttpConnection:
        loop = asyncio.get_running_loop()
        if endpoint.tls and tls is None:
            tls = ssl.create_default_context()
        _, protocol = await loop.create_connection(
            cls,
            endpoint.host,
            endpoint.port,
            ssl=tls if endpoint.tls else None,
            server_hostname=endpoint.host if endpoint.tls else None,
        )
        return protocol

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionLost(str(exc) if exc else "closed by peer"))

    def eof_received(self) -> bool:
        self.closed = True
        return False

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._parse()

    # requests
    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Write a request; the future gets (status, body)."""
        if self.closed or self.transport is None:
            raise ConnectionLost("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._need = -1
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        buf = self._buffer
        if self._need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            try:
                self._status = int(head[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                self._fail("malformed status line")
                return
            length, self._chunked, self._close_after = 0, False, False
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip())
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self._chunked = True
                elif name == "connection" and value.strip().lower() == "close":
                    self._close_after = True
            if head[0].startswith("HTTP/1.0"):
                self._close_after = True
            self._header_end = end + 4
            self._need = length
        if self._chunked:
            body = self._dechunk()
            if body is None:
                return
        else:
            if len(buf) - self._header_end < self._need:
                return
            body = bytes(buf[self._header_end : self._header_end + self._need])
            del buf[: self._header_end + self._need]
        self._need = -1
        waiter, self._waiter = self._waiter, None
        if self._close_after:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, body))

    def _dechunk(self) -> bytes | None:
        """The whole body once the last chunk is in, else None (and nothing consumed)."""
        buf = self._buffer
        pos, out = self._header_end, bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if size == 0:
                trailer_end = buf.find(b"\r\n", eol + 2)
                if trailer_end < 0:
                    return None
                del buf[: trailer_end + 2]
                return bytes(out)
            if len(buf) < eol + 2 + size + 2:
                return None
            out += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2

    def _fail(self, why: str) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionLost(why))

"""HTTP/1.1 over a bare socket, for requests no HTTP client would send: header bytes that are
not UTF-8, oversized lines, too many headers, bodies that lie about their length, requests
that never finish."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def request_bytes(
    method: str,
    path: str,
    headers: list[tuple[str, str | bytes]],
    body: bytes = b"",
    *,
    length: bool = True,
) -> bytes:
    """A request with `Connection: close`; header values may be raw bytes."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in headers:
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


TIMEOUT = 10.0  # seconds to connect, and to read a whole response


async def roundtrip(url: str, raw: bytes) -> RawReply:
    """Send `raw`, read until the server closes, parse one response."""
    host, port = address(url)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(_read_to_close(reader), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    return parse(data)


async def _read_to_close(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    try:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    except ConnectionResetError:  # the server may reset after answering an unread body
        pass
    return b"".join(chunks)


def parse(data: bytes) -> RawReply:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(("HTTP/1.1 ", "HTTP/1.0 ")), data[:200]  # 1.0: parser errors
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return RawReply(int(lines[0].split(" ")[1]), headers, body)

"""A small RFC 6455 WebSocket client on asyncio protocols, for the load generator.

No WebSocket client library ships in the lock files (only the server side: daphne/autobahn), and
ten thousand idle sockets want something lean: one protocol object per socket, no task per socket,
pings answered inline. Text frames are decoded as JSON and handed to a callback with their arrival
time, so latency is stamped before any queueing in the load generator.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any, cast

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

FrameHandler = Callable[["WebSocket", dict[str, Any], float], None]


class HandshakeError(RuntimeError):
    pass


def _mask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame: FIN set, masked as the RFC requires of clients."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return header + mask + _mask(payload, mask)


class WebSocket(asyncio.Protocol):
    """One client socket. ``on_frame(ws, frame, monotonic_time)`` gets every JSON text frame."""

    def __init__(self, *, host: str, path: str, origin: str, on_frame: FrameHandler | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.host, self.path, self.origin = host, path, origin
        self.on_frame = on_frame
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._key = base64.b64encode(os.urandom(16))
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future[dict[str, Any]]]] = []
        self.close_code: int | None = None
        self.frames_received = 0
        self.bad_frames = 0
        self.attrs: dict[str, Any] = {}  # the phase's own bookkeeping

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\nSec-WebSocket-Version: 13\r\nOrigin: {self.origin}\r\n\r\n"
        )
        self.transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self.opened.done():
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1")
            del self._buffer[: end + 4]
            status = head.split("\r\n", 1)[0]
            accept = base64.b64encode(hashlib.sha1(self._key + GUID).digest()).decode()
            if " 101 " not in f"{status} " or accept not in head:
                self.opened.set_exception(HandshakeError(status or "no status line"))
                self.abort()
                return
            self.opened.set_result(None)
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(f"connection lost during handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("socket closed"))
        self._waiters.clear()

    # --- frames -----------------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buffer
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            length, index = b1 & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, index = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, index = int.from_bytes(buf[2:10], "big"), 10
            mask = b""
            if b1 & 0x80:  # servers must not mask, but accept it
                if len(buf) < index + 4:
                    return
                mask, index = bytes(buf[index : index + 4]), index + 4
            if len(buf) < index + length:
                return
            payload = bytes(buf[index : index + length])
            del buf[: index + length]
            if mask:
                payload = _mask(payload, mask)
            self._frame(b0 & 0x80 != 0, b0 & 0x0F, payload)

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self._write(OP_PONG, payload)
            return
        if opcode == OP_PONG:
            return
        if opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self._write(OP_CLOSE, payload[:2])
            if self.transport is not None:
                self.transport.close()
            return
        if opcode in (OP_TEXT, OP_BINARY):
            self._fragment_opcode, self._fragments = opcode, [payload]
        elif opcode == OP_CONT:
            self._fragments.append(payload)
        if not fin:
            return
        data, self._fragments = b"".join(self._fragments), []
        if self._fragment_opcode != OP_TEXT:
            self.bad_frames += 1
            return
        received = time.monotonic()
        try:
            frame = json.loads(data)
        except ValueError:
            self.bad_frames += 1
            return
        self.frames_received += 1
        if self.on_frame is not None:
            self.on_frame(self, frame, received)
        if self._waiters:
            keep = []
            for predicate, waiter in self._waiters:
                if waiter.done():
                    continue
                if predicate(frame):
                    waiter.set_result(frame)
                else:
                    keep.append((predicate, waiter))
            self._waiters = keep

    # --- API --------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.opened.done() and not self.opened.exception() and not self.closed.done()

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(opcode, payload))

    def send_json(self, frame: dict[str, Any]) -> None:
        self._write(OP_TEXT, json.dumps(frame, separators=(",", ":")).encode())

    def expect(self, predicate: Callable[[dict[str, Any]], bool]) -> asyncio.Future[dict[str, Any]]:
        """A future for the next frame matching ``predicate`` (register before sending the request)."""
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self.closed.done():
            waiter.set_exception(ConnectionError("socket closed"))
        else:
            self._waiters.append((predicate, waiter))
        return waiter

    def close(self) -> None:
        """A clean close: send the close frame and let the server finish the handshake."""
        self._write(OP_CLOSE, (1000).to_bytes(2, "big"))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def ws_connect(
    host: str,
    port: int,
    path: str,
    *,
    origin: str,
    on_frame: FrameHandler | None = None,
    local_addr: tuple[str, int] | None = None,
    connect_timeout: float = 30.0,
) -> WebSocket:
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(
            lambda: WebSocket(host=f"{host}:{port}", path=path, origin=origin, on_frame=on_frame),
            host,
            port,
            local_addr=local_addr,
        ),
        connect_timeout,
    )
    try:
        await asyncio.wait_for(asyncio.shield(protocol.opened), connect_timeout)
    except BaseException:
        # Given up (say, queued in the listen backlog of a launcher whose web processes are all
        # down): the handshake's own failure that follows the abort is expected, not worth a warning.
        protocol.opened.add_done_callback(lambda future: future.cancelled() or future.exception())
        protocol.abort()
        raise
    return protocol

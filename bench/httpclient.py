"""A lean HTTP/1.1 keep-alive client on asyncio streams, for the load generator.

httpx is installed, but on a two-core machine its per-request cost would be taken from the server
under test; this client does only what the bench needs (JSON and form bodies, Content-Length or
chunked responses, cookies kept by the caller) and reuses its connection.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    cookies: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpError(RuntimeError):
    pass


class HttpConnection:
    """One keep-alive connection; one request at a time (callers pool connections)."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        if self._writer is None:
            await self._connect()

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=1 << 20), self.timeout
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        form: dict[str, str] | None = None,
    ) -> Response:
        body = b""
        all_headers = {"Host": f"{self.host}:{self.port}", "Connection": "keep-alive", **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if body or method in ("POST", "PUT", "PATCH"):
            all_headers["Content-Length"] = str(len(body))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
        payload = head.encode() + body
        # A keep-alive connection the server closed while idle is reopened once; a request that was
        # already written is never sent twice (the caller decides whether to retry).
        if self._writer is None or self._reader is None or self._reader.at_eof():
            self.close()
            await self._connect()
        try:
            return await asyncio.wait_for(self._exchange(payload), self.timeout)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, payload: bytes) -> Response:
        assert self._reader is not None and self._writer is not None
        self._writer.write(payload)
        await self._writer.drain()
        reader = self._reader
        raw_head = await reader.readuntil(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HttpError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        cookies: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                cookie_name, _, rest = value.partition("=")
                cookies[cookie_name.strip()] = rest.split(";", 1)[0]
            headers[name] = value
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(chunks)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = await reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status=status, headers=headers, cookies=cookies, body=body)


@dataclass
class Agent:
    """A logged-in console user: session cookie and CSRF token for the console API."""

    username: str
    cookies: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        return {
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            "X-CSRFToken": self.cookies.get("csrftoken", ""),
        }

    async def login(self, conn: HttpConnection, password: str) -> None:
        """Django's login form, as a browser does it: GET for the CSRF cookie, then POST."""
        page = await conn.request("GET", "/accounts/login/")
        self.cookies.update(page.cookies)
        if "csrftoken" not in self.cookies:
            raise HttpError(f"no csrftoken cookie from the login page (HTTP {page.status})")
        done = await conn.request(
            "POST",
            "/accounts/login/",
            headers={"Cookie": f"csrftoken={self.cookies['csrftoken']}"},
            form={"csrfmiddlewaretoken": self.cookies["csrftoken"], "username": self.username, "password": password},
        )
        self.cookies.update(done.cookies)  # the session, and the CSRF token rotated at login
        if done.status != 302 or "sessionid" not in self.cookies:
            raise HttpError(f"login of {self.username} failed (HTTP {done.status})")


class ConnectionPool:
    """At most ``size`` keep-alive connections; a caller waits when all are busy (that wait is part
    of the measured latency in open-loop phases, as a real client's queueing would be)."""

    def __init__(self, host: str, port: int, size: int, *, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(HttpConnection(host, port, timeout=timeout))
        self.size = size

    async def request(self, method: str, path: str, **kwargs: Any) -> Response:
        conn = await self._idle.get()
        try:
            return await conn.request(method, path, **kwargs)
        finally:
            self._idle.put_nowait(conn)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()

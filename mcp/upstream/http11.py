"""A small pooled HTTP/1.1 client for upstream MCP calls, on asyncio, with httptools parsing answers.

Why not httpx or aiohttp: the upstream call is on every invocation, and both cost more CPU per call
than the whole budget allows for it (httpx's AsyncClient several times this; aiohttp about 0.07 ms
more per call, DESIGN section 8). The gateway only needs what MCP's streamable HTTP uses: POST and
DELETE with a body, keep-alive, Content-Length or chunked answers read incrementally (SSE), a
deadline per request, TLS with verification, and no redirects (a redirect could carry the upstream
auth headers to another host, so it is an answer, never followed). Parsing is httptools (the C
parser uvicorn uses), not hand-written.

Connections the upstream closed while idle are noticed as it happens (the protocol sees the EOF),
so they are never reused. A request is sent again on a new connection only when not one byte of
it was written: a `tools/call` that may have reached the upstream runs at most once.

The pool keeps idle connections per origin (LIFO, so warm ones are reused and the rest age out)
and bounds the connections open at once across all origins; a caller that cannot get one before
its deadline gets PoolTimeout instead of queueing forever.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httptools

USER_AGENT = "maestro-mcp-gateway"
# Close idle connections before a typical server's keep-alive timeout does (uvicorn: 5 s).
IDLE_SECONDS = 4.0
# Stop reading from a connection while this much of its body waits for the reader.
HIGH_WATER = 256 * 1024

Resolver = Callable[[str, int], Awaitable[list[tuple[int, tuple]]]]


class TransportError(Exception):
    """Base of what this client raises; the cause (socket, ssl error) is chained."""


class ConnectFailed(TransportError):
    pass


class TimedOut(TransportError):
    pass


class PoolTimeout(TimedOut):
    pass


class ProtocolError(TransportError):
    """The connection closed or the peer did not speak HTTP/1.1 properly."""


class Headers:
    """Response headers, looked up case-insensitively (repeated headers joined with ', ')."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]):
        self._items = items

    def get(self, name: str, default=None):
        return self._items.get(name.lower(), default)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._items

    def items(self):
        return self._items.items()


async def system_resolver(host: str, port: int) -> list[tuple[int, tuple]]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, address) for family, _, _, _, address in infos]


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the response being read on it, if any."""

    def __init__(self, origin: tuple) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.broken = False  # closed by the peer, failed, or not reusable
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._response: Response | None = None
        self._header_name = b""
        self._headers: dict[str, str] = {}
        self._paused = False

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._response is None or self._parser is None:
            # Bytes nobody asked for (a server talking while idle): this connection is unusable.
            self.broken = True
            self.transport.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"malformed HTTP answer ({type(exc).__name__})"))
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols"))

    def eof_received(self) -> bool:
        self.broken = True
        response = self._response
        if response is not None and not response.complete:
            if response.status_code and response._until_close:
                response._finish()  # a body delimited by the end of the connection
            else:
                self._fail(ProtocolError("the server closed the connection before a complete answer"))
        return False

    def connection_lost(self, exc) -> None:
        self.broken = True
        response = self._response
        if response is not None and not response.complete:
            if response.status_code and response._until_close and exc is None:
                response._finish()
            else:
                self._fail(ProtocolError("the connection closed before a complete answer"))

    def pause_writing(self) -> None:  # request bodies are small; nothing to throttle
        pass

    def resume_writing(self) -> None:
        pass

    # --- httptools callbacks ---------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._response.reason_phrase = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        response = self._response
        response.status_code = self._parser.get_status_code()
        response.headers = Headers(self._headers)
        response._keep_alive = self._parser.should_keep_alive()
        response._until_close = "content-length" not in self._headers and "chunked" not in self._headers.get("transfer-encoding", "")
        if response.status_code < 200:  # 1xx: an interim answer; the real one follows
            self._headers = {}
            response.status_code = 0
            return
        response._headers_ready.set()

    def on_body(self, body: bytes) -> None:
        response = self._response
        response._chunks.append(body)
        response._buffered += len(body)
        if response._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        response._wake()

    def on_message_complete(self) -> None:
        response = self._response
        if response is not None and response.status_code:
            response._finish()

    # --- used by the pool ------------------------------------------------------------------

    def begin(self, response: Response) -> None:
        self._response = response
        self._headers = {}
        self._parser = httptools.HttpResponseParser(self)

    def drained(self) -> None:
        response = self._response
        if self._paused and response is not None and response._buffered <= HIGH_WATER // 2:
            self._paused = False
            self.transport.resume_reading()

    def release(self) -> None:
        self._response = None
        self._parser = None

    def _fail(self, error: TransportError) -> None:
        self.broken = True
        response = self._response
        if response is not None and not response.complete:
            response._error = error
            response._headers_ready.set()
            response._wake()
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """One response being read. `iter_bytes()` reads the body to the end, within the deadline."""

    def __init__(self, connection: _Connection, deadline: float):
        self._connection = connection
        self._deadline = deadline
        self.status_code = 0
        self.reason_phrase = ""
        self.headers = Headers({})
        self.complete = False
        self._keep_alive = False
        self._until_close = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._error: TransportError | None = None
        self._headers_ready = asyncio.Event()
        self._data = asyncio.Event()

    def _wake(self) -> None:
        self._data.set()

    def _finish(self) -> None:
        self.complete = True
        self._data.set()

    async def _until(self, event: asyncio.Event) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimedOut("read timed out")
        try:
            async with asyncio.timeout(left):
                await event.wait()
        except TimeoutError:
            raise TimedOut("read timed out") from None

    async def _read_head(self) -> None:
        await self._until(self._headers_ready)
        if self._error is not None:
            raise self._error

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                self._connection.drained()
                yield chunk
            if self._error is not None:
                raise self._error
            if self.complete:
                return
            self._data.clear()
            if self._chunks or self.complete or self._error is not None:
                continue
            await self._until(self._data)

    @property
    def reusable(self) -> bool:
        return self.complete and self._keep_alive and not self._connection.broken and not self._chunks


class Http11Pool:
    def __init__(self, *, max_connections: int, ssl_context: ssl.SSLContext | None = None, resolver: Resolver | None = None):
        self._idle: dict[tuple, list[_Connection]] = defaultdict(list)
        self._slots = asyncio.Semaphore(max_connections)
        self._ssl = ssl_context or ssl.create_default_context()
        self._resolve = resolver or system_resolver
        self._closed = False

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, headers: dict[str, str], deadline: float, content: bytes | None = None):
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        await self._acquire_slot(deadline)
        connection: _Connection | None = None
        response: Response | None = None
        try:
            connection = await self._checkout(origin, deadline)
            response = Response(connection, deadline)
            connection.begin(response)
            connection.transport.write(_request_bytes(method, target, origin, headers, content))
            await response._read_head()
            yield response
        except BaseException:
            if connection is not None:
                connection.close()  # whatever happened mid-exchange, this connection is done
            raise
        finally:
            if connection is not None:
                self._release(connection, reusable=response is not None and response.reusable)
            self._slots.release()

    async def _acquire_slot(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PoolTimeout("no free connection")
        try:
            async with asyncio.timeout(left):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolTimeout("no free connection") from None

    async def _checkout(self, origin: tuple, deadline: float) -> _Connection:
        now = time.monotonic()
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            # Usable only if nothing has been written to it since the server may have closed it:
            # a broken or expired one is dropped here, before a byte of this request is sent.
            if not connection.broken and not connection.transport.is_closing() and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return await self._connect(origin, deadline)

    async def _connect(self, origin: tuple, deadline: float) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimedOut("connect timed out")
        last: BaseException | None = None
        try:
            async with asyncio.timeout(left):
                addresses = await self._resolve(host, port)
                for family, address in addresses:
                    connection = _Connection(origin)
                    try:
                        sock = socket.socket(family, socket.SOCK_STREAM)
                        sock.setblocking(False)
                        # Small JSON-RPC requests: do not wait for Nagle before sending the body.
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        try:
                            await loop.sock_connect(sock, address)
                        except BaseException:
                            sock.close()
                            raise
                        await loop.create_connection(
                            lambda: connection, sock=sock,
                            ssl=self._ssl if scheme == "https" else None, server_hostname=host if scheme == "https" else None,
                        )
                        return connection
                    except ssl.SSLError as exc:
                        raise ConnectFailed(str(exc)) from exc
                    except OSError as exc:
                        last = exc
                        continue
        except TimeoutError:
            raise TimedOut("connect timed out") from None
        except socket.gaierror as exc:
            raise ConnectFailed(f"name resolution failed: {exc}") from exc
        raise ConnectFailed(str(last) if last else "no address to connect to") from last

    def _release(self, connection: _Connection, *, reusable: bool) -> None:
        connection.release()
        if reusable and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle[connection.origin].append(connection)
        else:
            connection.close()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, defaultdict(list)
        for connections in idle.values():
            for connection in connections:
                connection.close()


def _check_header(text: str) -> str:
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError("header names and values may not contain CR, LF or NUL")
    return text


def _request_bytes(method: str, target: str, origin: tuple, headers: dict[str, str], content: bytes | None) -> bytes:
    scheme, host, port = origin
    default_port = 443 if scheme == "https" else 80
    host_header = host if ":" not in host else f"[{host}]"
    if port != default_port:
        host_header = f"{host_header}:{port}"
    lines = [f"{method} {_check_header(target)} HTTP/1.1", f"Host: {host_header}", f"User-Agent: {USER_AGENT}"]
    for name, value in headers.items():
        lines.append(f"{_check_header(name)}: {_check_header(value)}")
    if content is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(content or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "strict")
    return head + content if content else head

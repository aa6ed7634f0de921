"""A small pooled HTTP/1.1 client for upstream MCP calls, on the standard library's http.client.

Why not httpx: measured on the invoke path, an httpx POST and read cost about 0.45 ms of CPU
(httpcore's pool bookkeeping, h11's event machinery, header models) against about 0.1 ms here,
and the upstream call is on every invocation. The gateway only needs what MCP's streamable HTTP
uses: POST/DELETE with a body, keep-alive, Content-Length or chunked answers read incrementally,
per-request time limits, TLS with verification, and no redirects (a redirect could carry the
upstream auth headers to another host, so it is an answer, never followed).

The pool keeps idle connections per origin (LIFO, so the warm ones are reused and the rest age
out) and bounds the connections open at once across all origins; a caller that cannot get one
before its deadline gets PoolTimeout instead of queueing forever.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from urllib.parse import urlsplit

USER_AGENT = "maestro-mcp-gateway"
READ_CHUNK = 64 * 1024
# Close idle connections before a typical server's keep-alive timeout does (uvicorn: 5 s), so a
# reused connection has rarely been closed under us; the retry below covers the rest.
IDLE_SECONDS = 4.0


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


class Response:
    """One response being read. Read it to the end (iter_bytes) to give its connection back."""

    __slots__ = ("_raw", "_sock", "_deadline", "status_code", "reason_phrase", "headers", "_pool", "_origin", "_conn", "_done")

    def __init__(self, raw: http.client.HTTPResponse, *, sock: socket.socket, deadline: float, pool: "Http11Pool", origin: tuple, conn):
        self._raw = raw
        # http.client hands the socket to the response (conn.sock = None) when the server says
        # Connection: close, so keep our own reference for the per-read timeouts.
        self._sock = sock
        self._deadline = deadline
        self.status_code = raw.status
        self.reason_phrase = raw.reason
        self.headers = raw.headers  # an email.message.Message: case-insensitive .get()
        self._pool, self._origin, self._conn = pool, origin, conn
        self._done = False

    def iter_bytes(self):
        raw = self._raw
        while True:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimedOut("read timed out")
            if raw.fp is None:  # http.client closes fp once the body is fully read
                break
            self._sock.settimeout(left)
            try:
                chunk = raw.read1(READ_CHUNK)
            except (socket.timeout, TimeoutError) as exc:
                raise TimedOut("read timed out") from exc
            except (http.client.HTTPException, OSError) as exc:
                raise ProtocolError(f"connection failed while reading ({type(exc).__name__})") from exc
            if not chunk:
                break
            yield chunk
            if raw.length == 0:
                # The whole Content-Length is in: read1 would return b"" without marking the
                # response complete, and an incomplete response cannot give its connection back.
                raw.read()
                break
        self._done = True

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        reusable = self._done and self._raw.isclosed() and not self._raw.will_close
        self._pool._release(self._origin, conn, reusable=reusable)


class Http11Pool:
    def __init__(self, *, max_connections: int, ssl_context: ssl.SSLContext | None = None):
        self._idle: dict[tuple, list[tuple[float, http.client.HTTPConnection]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._ssl = ssl_context or ssl.create_default_context()
        self._closed = False

    @contextmanager
    def stream(self, method: str, url: str, *, headers: dict[str, str], deadline: float, content: bytes | None = None):
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not self._slots.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise PoolTimeout("no free connection")
        response = None
        try:
            response = self._send(origin, method, target, headers, content, deadline)
            yield response
        finally:
            if response is not None:
                response.close()
            else:
                self._slots.release()

    def _send(self, origin: tuple, method: str, target: str, headers: dict, content: bytes | None, deadline: float) -> Response:
        headers = {"User-Agent": USER_AGENT, **headers}
        while True:
            conn, reused = self._checkout(origin, deadline)
            sock = conn.sock
            try:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                conn.request(method, target, body=content, headers=headers)
                raw = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                if reused:
                    # A kept-alive connection the server had already closed: nothing was processed,
                    # so sending again on a fresh connection is safe.
                    continue
                raise ProtocolError("the server closed the connection") from exc
            except (socket.timeout, TimeoutError) as exc:
                conn.close()
                raise TimedOut("timed out") from exc
            except ssl.SSLError as exc:
                conn.close()
                raise ConnectFailed(str(exc)) from exc
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                raise ProtocolError(f"bad answer ({type(exc).__name__})") from exc
            except BaseException:
                conn.close()
                raise
            return Response(raw, sock=sock, deadline=deadline, pool=self, origin=origin, conn=conn)

    def _checkout(self, origin: tuple, deadline: float) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                since, conn = idle.pop()
                if now - since < IDLE_SECONDS:
                    return conn, True
                conn.close()
        return self._connect(origin, deadline), False

    def _connect(self, origin: tuple, deadline: float) -> http.client.HTTPConnection:
        from mcp.upstream import destinations  # the SSRF guard (imported here: this method is its only seam)

        scheme, host, port = origin
        timeout = max(deadline - time.monotonic(), 0.001)
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        # The destination policy, after DNS: connect only to an address it allows, resolved once
        # here (a name that now resolves somewhere else is caught; TLS still checks the name).
        conn._create_connection = destinations.connect_checked
        try:
            conn.connect()
        except destinations.DestinationRefused:
            conn.close()
            raise
        except (socket.timeout, TimeoutError) as exc:
            conn.close()
            raise TimedOut("connect timed out") from exc
        except OSError as exc:  # refused, unreachable, no such host, TLS (ssl.SSLError is an OSError)
            conn.close()
            raise ConnectFailed(str(exc)) from exc
        # Small JSON-RPC requests: do not wait for Nagle before sending the body.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _release(self, origin: tuple, conn: http.client.HTTPConnection, *, reusable: bool) -> None:
        try:
            if reusable and not self._closed:
                with self._lock:
                    self._idle[origin].append((time.monotonic(), conn))
            else:
                conn.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, defaultdict(list)
        for conns in idle.values():
            for _since, conn in conns:
                conn.close()

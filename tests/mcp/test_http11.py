"""The upstream HTTP/1.1 pool (mcp.upstream.http11) against a real socket server whose behaviour
each test picks: keep-alive reuse, a server that drops idle connections, chunked bodies, slow
bodies, a full pool, refused connections, a server that drops a request it read. The pool is
asynchronous; the tests drive it on the bridge's event loop."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time

import pytest

from maestro import bridge
from mcp.upstream import http11
from tests.support.services import free_port


class Upstream(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, mode: str):
        self.mode = mode
        self.connections = 0
        self.requests = 0
        self.closed = threading.Semaphore(0)  # released each time the server ends a connection
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/mcp"


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            self.serve_requests()
        finally:
            self.server.closed.release()

    def serve_requests(self):
        server: Upstream = self.server
        server.connections += 1
        while True:
            line = self.rfile.readline()
            if not line:
                return
            length = 0
            while (header := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            self.rfile.read(length)
            server.requests += 1
            if not self.answer(server.mode):
                return

    def answer(self, mode: str) -> bool:
        """Write one response; False closes the connection."""
        if mode == "chunked":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")
            return True
        if mode == "slow-body":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
            self.wfile.flush()
            time.sleep(2)
            return False
        if mode == "drop-request":
            return False  # read the request, answer nothing, close: it may have run
        body = b'{"ok":true}'
        extra = b"Connection: close\r\n" if mode == "close" else b""
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body))
        # "drop-idle": answer as if keeping the connection, then drop it, as servers do after their idle timeout
        return mode not in ("close", "drop-idle")


async def afetch(pool: http11.Http11Pool, url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    async with pool.stream("POST", url, headers={"Content-Type": "application/json"}, content=b"{}", deadline=time.monotonic() + timeout) as response:
        return response.status_code, b"".join([chunk async for chunk in response.iter_bytes()])


def fetch(pool: http11.Http11Pool, url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    return bridge.run(afetch(pool, url, timeout))


def new_pool(max_connections: int) -> http11.Http11Pool:
    async def make():
        return http11.Http11Pool(max_connections=max_connections)

    return bridge.run(make())


def idle_connections_broken(pool: http11.Http11Pool) -> bool:
    async def check():
        await asyncio.sleep(0)  # let the loop deliver what the socket already received
        return all(c.broken for conns in pool._idle.values() for c in conns)

    return bridge.run(check())


@pytest.fixture
def pool():
    pool = new_pool(4)
    yield pool
    bridge.run(pool.close())


def test_sequential_calls_reuse_one_connection(pool):
    upstream = Upstream("keep-alive")
    answers = [fetch(pool, upstream.url) for _ in range(20)]
    assert answers == [(200, b'{"ok":true}')] * 20
    assert (upstream.requests, upstream.connections) == (20, 1)


def test_a_chunked_answer_is_read_whole_and_the_connection_reused(pool):
    upstream = Upstream("chunked")
    assert [fetch(pool, upstream.url) for _ in range(3)] == [(200, b'{"a":1}')] * 3
    assert upstream.connections == 1


def test_a_connection_the_server_dropped_while_idle_is_replaced_transparently(pool):
    upstream = Upstream("drop-idle")
    answers = []
    for _ in range(5):
        answers.append(fetch(pool, upstream.url))
        # The server closes the idle connection (as an idle timeout would); the pool sees the EOF.
        assert upstream.closed.acquire(timeout=5)
        deadline = time.monotonic() + 5
        while not idle_connections_broken(pool) and time.monotonic() < deadline:
            pass
    assert answers == [(200, b'{"ok":true}')] * 5
    assert upstream.requests == 5  # each sent once: the dead connection never carried a request


def test_a_request_the_server_read_and_dropped_is_never_sent_again(pool):
    # Given a warm keep-alive connection to a server that will read the next request and hang up
    upstream = Upstream("keep-alive")
    fetch(pool, upstream.url)
    upstream.mode = "drop-request"
    # When a request goes out on it, the caller hears the connection failed...
    with pytest.raises(http11.ProtocolError):
        fetch(pool, upstream.url)
    # ...and it was not re-sent on a new connection: it may have run once, it must not run twice
    assert upstream.requests == 2


def test_connection_close_is_honoured(pool):
    upstream = Upstream("close")
    for _ in range(3):
        assert fetch(pool, upstream.url)[0] == 200
    assert upstream.connections == 3


def test_a_body_slower_than_the_deadline_times_out(pool):
    upstream = Upstream("slow-body")
    started = time.monotonic()
    with pytest.raises(http11.TimedOut):
        fetch(pool, upstream.url, timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_a_full_pool_gives_pool_timeout_not_a_queue():
    pool = new_pool(1)
    upstream = Upstream("keep-alive")

    async def while_one_is_held():
        async with pool.stream("POST", upstream.url, headers={}, content=b"{}", deadline=time.monotonic() + 2):
            with pytest.raises(http11.PoolTimeout):
                await afetch(pool, upstream.url, timeout=0.2)

    bridge.run(while_one_is_held())
    assert fetch(pool, upstream.url)[0] == 200  # the slot came back


def test_a_refused_connection_is_connect_failed(pool):
    port = free_port()
    with pytest.raises(http11.ConnectFailed) as raised:
        fetch(pool, f"http://127.0.0.1:{port}/mcp")
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)


def test_an_answer_that_is_not_http_is_a_protocol_error(pool):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def garbage():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.close()

    threading.Thread(target=garbage, daemon=True).start()
    with pytest.raises(http11.ProtocolError):
        fetch(pool, f"http://127.0.0.1:{listener.getsockname()[1]}/mcp")
    listener.close()

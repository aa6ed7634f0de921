"""A loopback proxy that adds headers to every request, for clients that cannot send them (the
MCP conformance CLI has no header option, and the gateway's endpoint needs `Authorization`).

Each request's head is rewritten (path prefix replaced, headers added, `Connection: close`, so a
connection carries one request and the rest can be piped as bytes); everything after it, request
body and answer alike, is piped unchanged and unbuffered, so event streams pass through as they
come. Runs its own event loop in a daemon thread; `stop()` closes it.
"""

from __future__ import annotations

import asyncio
import threading

from tests.support.services import free_port

MAX_HEAD = 64 * 1024


class AuthProxy:
    def __init__(self, *, target_port: int, path_from: str, path_to: str, headers: dict[str, str], port: int | None = None):
        self.port = port or free_port()
        self.target_port = target_port
        self.path_from, self.path_to = path_from.encode(), path_to.encode()
        self.added = b"".join(f"{name}: {value}\r\n".encode() for name, value in headers.items())
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="auth-proxy", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AuthProxy:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        """Close the listener and every connection still open (a client's streams), then the loop."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _shutdown(self) -> None:
        self.server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self.loop.call_soon(self.ready.set)
        self.loop.run_forever()

    def _head(self, head: bytes) -> bytes:
        request_line, _, rest = head.partition(b"\r\n")
        method, target, version = request_line.split(b" ", 2)
        if target.startswith(self.path_from):
            target = self.path_to + target[len(self.path_from):]
        lines = [line for line in rest.split(b"\r\n") if line and not line.lower().startswith((b"connection:", b"authorization:"))]
        return b" ".join([method, target, version]) + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + self.added + b"Connection: close\r\n\r\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_HEAD:
                return
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            upstream_writer.write(self._head(head[:-4]))
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError, asyncio.CancelledError):
            pass
        finally:
            for stream in (writer, upstream_writer):
                if stream is not None:
                    stream.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            try:
                sink.write_eof()
            except (OSError, RuntimeError):
                pass

"""Upstreams that answer wrongly, for the gateway's unhappy-path tests. One process, one path each:

    /html        200 text/html: a web page, not MCP
    /badjson     200 application/json that does not parse
    /notrpc      200 JSON that is not a JSON-RPC response
    /wrongid     200 a JSON-RPC response to another request id
    /huge        200 a valid JSON-RPC response of --huge-bytes, streamed without Content-Length
    /huge-cl     the same with a Content-Length header (refused before reading)
    /hugesse     an SSE stream of keep-alive comments that never ends within the size cap
    /slow        answers nothing for --slow-seconds
    /http500     500 text/plain
    /emptysse    an SSE stream that ends without an answer
    /redirect    302 to another host (must not be followed)

And MCP servers (2026-07-28, sessionless: discovery and tools/list answered properly, one tool
`echo`) whose tools/call goes wrong after the tool "ran" (each call counted: GET /calls):

    /mcp-nan     a result holding NaN and Infinity (JSON parsers take them; JSON has no such values)
    /mcp-bigint  a result holding an integer no double can carry (10**400)
    /mcp-drop    reads the call, then closes the connection without a byte of answer
    /mcp-garbage answers the call with bytes that are not JSON

With --tls-port, the same paths are also served over TLS with a freshly generated self-signed
certificate, which no client trusts. The server uses only the standard library and `cryptography`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    huge_bytes = 8 * 1024 * 1024
    slow_seconds = 30.0

    def log_message(self, format, *args):  # keep test output quiet
        pass

    calls: dict[str, int] = {}
    calls_lock = threading.Lock()

    def do_GET(self):
        if self.path == "/calls":
            with self.calls_lock:
                return self._answer(200, "application/json", json.dumps(self.calls).encode())
        self._answer(200, "text/plain", b"faulty upstream\n")

    def do_DELETE(self):
        self._answer(200, "text/plain", b"")

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            request_id = json.loads(body).get("id")
        except (ValueError, AttributeError):
            request_id = None
        path = self.path.split("?")[0]
        if path.startswith("/mcp-"):
            return self._mcp(path, body, request_id)
        if path == "/html":
            return self._answer(200, "text/html; charset=utf-8", b"<!doctype html><html><head><title>Welcome</title></head><body>It works</body></html>")
        if path == "/badjson":
            return self._answer(200, "application/json", b'{"jsonrpc": "2.0", "id": ')
        if path == "/notrpc":
            return self._answer(200, "application/json", b'{"status": "ok", "items": [1, 2, 3]}')
        if path == "/wrongid":
            return self._answer(200, "application/json", json.dumps({"jsonrpc": "2.0", "id": "someone-else", "result": {}}).encode())
        if path in ("/huge", "/huge-cl"):
            return self._huge(request_id, with_length=path == "/huge-cl")
        if path == "/hugesse":
            return self._huge_sse()
        if path == "/slow":
            time.sleep(self.slow_seconds)
            return self._answer(200, "application/json", json.dumps({"jsonrpc": "2.0", "id": request_id, "result": {}}).encode())
        if path == "/http500":
            return self._answer(500, "text/plain", b"internal server error: secret=hunter2\n")
        if path == "/emptysse":
            return self._answer(200, "text/event-stream", b": nothing to see\r\n\r\nevent: message\r\ndata: \r\n\r\n")
        if path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://example.invalid/mcp")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._answer(404, "text/plain", b"no such path\n")

    def _mcp(self, path: str, body: bytes, request_id) -> None:
        method = json.loads(body).get("method")
        if method == "server/discover":
            result = {"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}, "resultType": "complete",
                      "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "faulty-mcp", "version": "1"}}}
        elif method == "tools/list":
            result = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}], "resultType": "complete"}
        elif method == "tools/call":
            with self.calls_lock:
                self.calls[path] = self.calls.get(path, 0) + 1
            if path == "/mcp-drop":
                self.close_connection = True
                self.connection.shutdown(2)  # the request was read (the tool "ran"): no answer at all
                return
            if path == "/mcp-garbage":
                return self._answer(200, "application/json", b"\x00\x01 not json at all")
            if path == "/mcp-nan":
                raw = b'{"jsonrpc": "2.0", "id": ' + json.dumps(request_id).encode() + b', "result": {"content": [], "structuredContent": {"v": NaN, "w": -Infinity}}}'
                return self._answer(200, "application/json", raw)
            if path == "/mcp-bigint":
                raw = b'{"jsonrpc": "2.0", "id": ' + json.dumps(request_id).encode() + b', "result": {"content": [], "structuredContent": {"n": 1' + b"0" * 400 + b"}}}"
                return self._answer(200, "application/json", raw)
            result = {"content": []}
        else:
            result = {}
        self._answer(200, "application/json", json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}).encode())

    def _answer(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _huge(self, request_id, *, with_length: bool) -> None:
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode() + b',"result":{"content":[{"type":"text","text":"'
        tail = b'"}]}}'
        filler = self.huge_bytes
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if with_length:
            self.send_header("Content-Length", str(len(head) + filler + len(tail)))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"x" * 65536
        try:
            self._write(head, chunked=not with_length)
            sent = 0
            while sent < filler:
                piece = chunk[: min(len(chunk), filler - sent)]
                self._write(piece, chunked=not with_length)
                sent += len(piece)
            self._write(tail, chunked=not with_length)
            if not with_length:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading at its cap, as it should

    def _huge_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        comment = b": " + b"y" * 65530 + b"\r\n"
        try:
            for _ in range(self.huge_bytes // len(comment) + 2):
                self._write(comment, chunked=True)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _write(self, data: bytes, *, chunked: bool) -> None:
        if chunked:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        else:
            self.wfile.write(data)


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-port", type=int)
    parser.add_argument("--huge-bytes", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    args = parser.parse_args()
    Handler.huge_bytes = args.huge_bytes
    Handler.slow_seconds = args.slow_seconds

    ThreadingHTTPServer.daemon_threads = True
    plain = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    servers = [plain]
    if args.tls_port:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # The context keeps the loaded certificate: the files are not needed (nor left behind) after.
        with tempfile.TemporaryDirectory(prefix="faulty-tls-") as folder:
            cert, key = self_signed(Path(folder))
            context.load_cert_chain(cert, key)
        tls = ThreadingHTTPServer(("127.0.0.1", args.tls_port), Handler)
        tls.socket = context.wrap_socket(tls.socket, server_side=True)
        servers.append(tls)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    plain.serve_forever()


if __name__ == "__main__":
    main()

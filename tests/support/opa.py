"""A small HTTP server that answers in OPA's documented data-API shape
(POST /v1/data/<path> {"input": ...} -> {"result": ..., "decision_id": ...}).
No OPA binary can be installed here; this stands in for it, and records what it was asked."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpa:
    def __init__(self) -> None:
        self.result: object = True  # what `result` holds; a callable gets the input
        self.status = 200
        self.delay_s = 0.0
        self.raw_body: bytes | None = None
        self.requests: list[dict] = []
        opa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                # The path as sent (http.server collapses a leading "//" in self.path).
                opa.requests.append({"path": self.requestline.split()[1], "body": body})
                if opa.delay_s:
                    time.sleep(opa.delay_s)
                if opa.raw_body is not None:
                    payload = opa.raw_body
                else:
                    result = opa.result(body.get("input")) if callable(opa.result) else opa.result
                    document = {"decision_id": str(uuid.uuid4())}
                    if result is not None:
                        document["result"] = result
                    payload = json.dumps(document).encode()
                self.send_response(opa.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOpa":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

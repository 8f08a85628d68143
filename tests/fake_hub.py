"""A Hugging Face Hub stand-in on loopback: enough of the resolve endpoint for hf_hub_download."""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # "owner/repo/path/in/repo" → content
        self.truncate: set[str] = set()  # files whose body is cut off half-way
        self.requests: list[tuple[str, str]] = []
        self.url = ""

    def add_folder(self, repo_id: str, subfolder: str, folder: Path) -> None:
        for path in folder.iterdir():
            self.files[f"{repo_id}/{subfolder}/{path.name}"] = path.read_bytes()

    def handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _lookup(self) -> tuple[str, bytes] | None:
                # /{owner}/{repo}/resolve/{revision}/{path}
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                key = "/".join(parts[:2] + parts[4:])
                return (key, hub.files[key]) if key in hub.files else None

            def _headers(self, key: str, body: bytes) -> None:
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()

            def do_HEAD(self):
                hub.requests.append(("HEAD", self.path))
                found = self._lookup()
                if found is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self.send_response(200)
                self._headers(*found)

            def do_GET(self):
                hub.requests.append(("GET", self.path))
                found = self._lookup()
                if found is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                key, body = found
                self.send_response(200)
                self._headers(key, body)
                if key in hub.truncate:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.close()  # the client sees a body shorter than Content-Length
                    return
                self.wfile.write(body)

        return Handler


@contextmanager
def serve(hub: FakeHub):
    server = ThreadingHTTPServer(("127.0.0.1", 0), hub.handler())
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()

"""A loopback HTTP server for the download tests: serves in-memory files with Range support and faults.

Every test that downloads uses :class:`ArchiveServer` on 127.0.0.1 (ephemeral port) and
:func:`guard_loopback`, which makes any request to another host fail the test, so no test can reach the
network. The server records each request (path, Range header, status, bytes sent) so tests can assert that
a resumed download fetched only the rest of the file.
"""

from __future__ import annotations

import io
import socket
import tarfile
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

LOOPBACK = "127.0.0.1"
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@dataclass
class Request:
    """One request the server saw."""

    path: str
    range: str | None
    status: int
    sent: int


class ArchiveServer:
    """Serve ``files`` (URL path -> bytes); ``faults[path]`` is a queue of one-shot misbehaviours.

    Faults: ``"cut"`` sends the headers of the whole file but only half the body, then closes the
    connection; ``"ignore_range"`` answers a Range request with the whole file (200); ``"404"``/``"500"``
    answer with that status.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.requests: list[Request] = []
        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/mirror``: what ``$CLIPTRASE_DOWNLOAD_BASE`` is set to."""
        return f"http://{LOOPBACK}:{self._httpd.server_address[1]}/mirror"

    def add(self, filename: str, data: bytes) -> None:
        """Serve ``data`` at ``<base_url>/<filename>``."""
        self.files[f"/mirror/{filename}"] = data

    def fault(self, filename: str, *faults: str) -> None:
        """Queue one-shot faults for the next requests of ``filename``."""
        self.faults.setdefault(f"/mirror/{filename}", []).extend(faults)

    def requests_for(self, filename: str) -> list[Request]:
        """The requests of ``filename`` so far."""
        return [r for r in self.requests if r.path == f"/mirror/{filename}"]

    def start(self) -> ArchiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                del format, args

            def do_GET(self) -> None:
                data = server.files.get(self.path)
                queue = server.faults.get(self.path) or []
                fault = queue.pop(0) if queue else None
                requested = self.headers.get("Range")
                if fault in ("404", "500") or data is None:
                    status = int(fault) if fault else 404
                    server.requests.append(Request(self.path, requested, status, 0))
                    self.send_error(status)
                    return
                start = 0
                if requested and fault != "ignore_range":
                    start = int(requested.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        server.requests.append(Request(self.path, requested, 416, 0))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                body = data[start:]
                status = 206 if start else 200
                self.send_response(status)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                sent = body[: len(body) // 2] if fault == "cut" else body
                self.wfile.write(sent)
                server.requests.append(Request(self.path, requested, status, len(sent)))
                if fault == "cut":
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)

        return Handler


def guard_loopback(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail on any request to a host other than 127.0.0.1; returns the list of URLs requested.

    Proxies are cleared so that loopback requests go straight to the test server.
    """
    from cliptrase.datasets.download import http

    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    seen: list[str] = []
    real_open = http.open_url

    def checked_open(url: str, start: int):
        host = urlparse(url).hostname
        assert host == LOOPBACK, f"test tried to reach {host} ({url}); only {LOOPBACK} is allowed"
        seen.append(url)
        return real_open(url, start)

    monkeypatch.setattr(http, "open_url", checked_open)
    return seen


# ------------------------------------------------------------------------------------- archive builders


def tar_bytes(files: dict[str, bytes], *, mode: str = "w", links: dict[str, str] | None = None) -> bytes:
    """A tar archive of ``files`` (member name -> content) plus symlinks ``links`` (name -> target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip archive of ``files`` (member name -> content)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zipped:
        for name, content in files.items():
            zipped.writestr(name, content)
    return buf.getvalue()

"""HttpReader against a real HTTP server on loopback that sends what a broken server might."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from engine.errors import OperationError
from engine.transfers.http_source import HttpReader
from tests.conftest import serving


@contextmanager
def server_sending(length: str) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", length)
            self.end_headers()
            self.wfile.write(b"x" * 24)

        def log_message(self, *args: object) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield f"http://127.0.0.1:{port}/disk.img"


@pytest.mark.parametrize("length", ["²", "1²"])  # headers are ISO-8859-1: these are the digits they can carry
def test_a_content_length_that_is_not_ascii_digits_fails_the_copy(length: str) -> None:
    with server_sending(length) as url, pytest.raises(OperationError, match="Content-Length that is not a number"):
        HttpReader(url, 0)

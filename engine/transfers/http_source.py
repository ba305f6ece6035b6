"""HTTP(S) sources: streamed from the front end, checked against Content-Length, resumed with Range requests.

A body shorter than its Content-Length is a dropped connection (retried from where it stopped), never a
silent truncation. A server that ignores Range answers 200 with the whole body; the copy then starts over.
What identifies the body (ETag, Last-Modified, its length) is kept as Validators, for the host image cache.
"""

from __future__ import annotations

import http.client
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator

from engine.errors import ConnectionLost, OperationError
from engine.language.numbers import whole_number
from engine.transfers.cache.layout import Validators
from engine.transfers.streams import CHUNK, Reader

TIMEOUT = 30.0
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18}|\*)")


def head_validators(url: str) -> Validators:
    """What the server says identifies `url`'s body now, from a HEAD request (nothing known when it will not
    answer one)."""
    try:
        response = _open(url, 0, "HEAD")
    except OperationError:
        return Validators()
    with response:
        return _validators(response.headers, whole_number(response.headers.get("Content-Length") or ""))


def _validators(headers, length: int | None) -> Validators:
    return Validators(headers.get("ETag"), headers.get("Last-Modified"), length)


def _open(url: str, offset: int, method: str = "GET"):
    """The response to a GET from `offset`, or None when the server cannot serve that range (416)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {}, method=method)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return None
        transient = exc.code >= 500 or exc.code == 408
        raise (ConnectionLost if transient else OperationError)(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):  # final: retrying cannot make it trusted
            why = reason.verify_message or reason
            raise OperationError(
                f"{url}: certificate not trusted: {why} (trust its CA on the front end, or set SSL_CERT_FILE)"
            ) from None
        raise ConnectionLost(f"{url}: {reason}") from None


class HttpReader(Reader):
    carrier = "http"

    def __init__(self, url: str, offset: int) -> None:
        self.url = url
        response = _open(url, offset)
        if response is None:  # the partial copy is already whole, or the source changed: start over
            offset, response = 0, _open(url, 0)
        self._response = response
        length = self._response.headers.get("Content-Length")
        body = whole_number(length) if length is not None else None
        if length is not None and body is None:
            self._response.close()
            raise OperationError(f"{url}: the server sent a Content-Length that is not a number: {length!r}")
        if offset and self._response.status == 206:
            match = _CONTENT_RANGE.fullmatch(self._response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                self._response.close()
                raise OperationError(f"{url}: the server answered a Range request with a wrong Content-Range")
            self.offset = offset
            self.total = int(match.group(3)) if match.group(3) != "*" else None
        else:
            self.offset = 0
            self.total = body
        self._expected = body
        self.validators = _validators(self._response.headers, self.total)

    def chunks(self) -> Iterator[bytes]:
        received = 0
        while True:
            try:
                data = self._response.read(CHUNK)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                where = self.offset + received
                raise ConnectionLost(f"{self.url}: connection dropped after {where} bytes: {exc}") from None
            if not data:
                break
            received += len(data)
            yield data
        if self._expected is not None and received != self._expected:
            raise ConnectionLost(
                f"{self.url}: short body: got {self.offset + received} of {self.offset + self._expected} bytes"
            )

    def close(self) -> None:
        self._response.close()

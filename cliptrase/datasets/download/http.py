"""HTTP transfer of one archive into ``<file>.part``: resumed with a ``Range`` request after an interruption
(206 checked; a server that ignores ranges gets a full re-download), hashed while it streams."""

from __future__ import annotations

import logging
import re
import time
import urllib.error
import urllib.request
from http.client import HTTPException, HTTPResponse
from pathlib import Path

from cliptrase import __version__
from cliptrase.datasets.download.catalogue import Archive
from cliptrase.datasets.download.disk import FreeBytes, check_disk_space, human_bytes
from cliptrase.datasets.download.manifest import CHUNK, Hashes, progress_bar
from cliptrase.errors import DownloadError
from cliptrase.paths import DOWNLOAD_BASE_ENV

logger = logging.getLogger(__name__)

_TIMEOUT_S = 60.0
_LOG_EVERY_S = 30.0
_HTTP_RANGE_NOT_SATISFIABLE = 416
_HTTP_PARTIAL = 206
_HTTP_SERVER_ERROR = 500


def open_url(url: str, start: int) -> HTTPResponse:
    """GET ``url``, from byte ``start`` on when resuming. Separate so tests can assert the host."""
    headers = {"User-Agent": f"cliptrase/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)


class _RangeMismatchError(Exception):
    """The partial file does not fit the server's file (416 for another length): start over."""


def _request(url: str, start: int, filename: str) -> HTTPResponse | None:
    """Open the response, or None when the server says the resumed range is empty (the file is complete).

    Raises:
        _RangeMismatchError: The server refused the range and its file has another length than the part.
        DownloadError: HTTP errors and unreachable hosts, as one line with the fix.
    """
    try:
        return open_url(url, start)
    except urllib.error.HTTPError as err:
        if err.code == _HTTP_RANGE_NOT_SATISFIABLE and start:
            total = (err.headers.get("Content-Range") or "").rpartition("/")[2]
            err.close()
            if total.isdigit() and int(total) == start:
                return None
            raise _RangeMismatchError(filename) from None
        hint = (
            "the server is failing: try again later or use a mirror"
            if err.code >= _HTTP_SERVER_ERROR
            else f"the file is not at this URL: check it (or ${DOWNLOAD_BASE_ENV} / --mirror)"
        )
        raise DownloadError(f"{filename}: HTTP {err.code} {err.reason} from {url}; {hint}") from None
    except (urllib.error.URLError, OSError, HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"{filename}: cannot reach {url} ({reason}); check the network, or use a mirror "
            f"(${DOWNLOAD_BASE_ENV} or --mirror)"
        ) from None


def fetch(
    url: str, part: Path, archive: Archive, root: Path, free_bytes: FreeBytes | None
) -> tuple[Hashes, int, bool]:
    """Stream ``url`` into ``part``, resuming from its current length. Returns hashes, bytes fetched, resumed.

    Raises:
        DownloadError: HTTP/network errors, a size other than the published one, an interrupted transfer
            (the ``.part`` file is kept and the next run resumes it).
        DiskSpaceError: The bytes still to come do not fit.
    """
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _request(url, start, archive.filename)
    except _RangeMismatchError:
        logger.warning("%s: the partial download does not match the server's file; starting over", part)
        part.unlink()
        start, response = 0, _request(url, 0, archive.filename)
    hashes = Hashes()
    if response is None:  # 416 at exactly our length: the .part is already the whole file
        return hashes.update_from_file(part), 0, True
    with response:
        if start and response.status != _HTTP_PARTIAL:
            logger.warning("%s: the server ignored the range request; downloading from the start", url)
            start = 0
        total = _total_size(response, start, archive, url)
        if archive.size is not None and total is not None and total != archive.size:
            raise DownloadError(
                f"{archive.filename}: {url} serves {total} bytes, the official file has {archive.size}; "
                "this is not the official archive: use the official URL or a faithful mirror"
            )
        if total is not None:
            check_disk_space(root, total - start, free_bytes=free_bytes, what=f"rest of {archive.filename}")
        if start:
            hashes.update_from_file(part, desc=f"rehash {part.name}")
            logger.info(
                "%s: resuming at %s of %s",
                archive.filename,
                human_bytes(start),
                human_bytes(total) if total else "?",
            )
        fetched = _stream(response, part, hashes, start=start, total=total, filename=archive.filename)
    if total is not None and hashes.size < total:
        raise DownloadError(
            f"{archive.filename}: transfer interrupted at {human_bytes(hashes.size)} of "
            f"{human_bytes(total)}; the partial file {part} is kept: re-run the same command to resume"
        )
    return hashes, fetched, bool(start)


def _total_size(response: HTTPResponse, start: int, archive: Archive, url: str) -> int | None:
    """Length of the whole file: the server's ``Content-Range`` total (206) or ``Content-Length``.

    Falls back to the published size when the server states neither.

    Raises:
        DownloadError: A 206 whose range does not start where the partial file ends.
    """
    if start:
        content_range = response.headers.get("Content-Range") or ""
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
        if not match or int(match.group(1)) != start:
            raise DownloadError(
                f"{archive.filename}: {url} answered the range request for byte {start} with "
                f"{content_range!r}; delete the partial file and re-run"
            )
        if match.group(2).isdigit():
            return int(match.group(2))
    length = response.headers.get("Content-Length")
    return start + int(length) if length is not None and length.isdigit() else archive.size


def _stream(
    response: HTTPResponse, part: Path, hashes: Hashes, *, start: int, total: int | None, filename: str
) -> int:
    """Append the response body to ``part`` (truncating it when ``start`` is 0); return bytes written."""
    written, t0, last_log = 0, time.monotonic(), time.monotonic()
    try:
        with part.open("ab" if start else "wb") as fh, progress_bar(total, start, filename) as bar:
            while chunk := response.read(CHUNK):
                fh.write(chunk)
                hashes.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
                if time.monotonic() - last_log >= _LOG_EVERY_S:
                    last_log = time.monotonic()
                    _log_progress(filename, start + written, total, written / (last_log - t0))
    except (OSError, HTTPException) as err:
        reason = getattr(err, "strerror", None) or err
        raise DownloadError(
            f"{filename}: transfer failed after {human_bytes(start + written)} ({reason}); the partial file "
            f"{part} is kept: fix the cause and re-run the same command to resume"
        ) from None
    return written


def _log_progress(filename: str, done: int, total: int | None, rate: float) -> None:
    """A log line for runs without a terminal (no visible progress bar): size, rate and time left."""
    if total and rate > 0:
        left = (total - done) / rate
        logger.info(
            "%s: %s of %s (%s/s, about %d min left)",
            filename,
            human_bytes(done),
            human_bytes(total),
            human_bytes(rate),
            round(left / 60),
        )
    else:
        logger.info("%s: %s (%s/s)", filename, human_bytes(done), human_bytes(rate))

"""Turn a data file on disk into text, or a `DataError` that says why it cannot be read.

Everything here is a file-level problem: no record can be trusted, so these are errors even
when the caller asked to skip invalid records. Files are only ever opened for reading.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

from loraqa.errors import DataError
from loraqa.input_files import MAX_DATA_FILE_BYTES, MIB, input_file_problem

_GZIP_MAGIC = b"\x1f\x8b"


def read_text(path: Path) -> str:
    """Return the file's text: gunzipped when its name ends in `.gz`, decoded as UTF-8.

    A leading UTF-8 byte order mark is dropped (spreadsheet exports add one). Raises `DataError`
    naming the file when it is missing, not a regular file, unreadable, a broken gzip stream,
    not valid UTF-8, or empty (nothing but whitespace).
    """
    data = _read_bytes(path)
    if path.name.endswith(".gz"):
        data = _gunzip(path, data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(path, _utf8_problem(path, data, err)) from None
    if not text.strip():
        raise DataError(path, "the file is empty")
    return text


def _read_bytes(path: Path) -> bytes:
    try:
        # A directory, a device (/dev/zero), a pipe that could block forever, a file over the limit.
        problem = input_file_problem(path, MAX_DATA_FILE_BYTES)
        if problem:
            raise DataError(path, problem)
        return path.read_bytes()
    except (OSError, ValueError) as err:
        # OSError: permissions, a name too long, I/O; ValueError: a NUL character in the name.
        raise DataError(path, f"cannot read the file: {getattr(err, 'strerror', None) or err}") from None


def _gunzip(path: Path, data: bytes) -> bytes:
    """The decompressed bytes, at most MAX_DATA_FILE_BYTES of them: a few KB of gzip can expand
    to gigabytes, and the limit on a data file holds for what it holds, not what it weighs."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = stream.read(MAX_DATA_FILE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:
        # OSError covers BadGzipFile; EOFError is a stream cut short.
        raise DataError(path, f"not a valid gzip file ({err or type(err).__name__})") from None
    if len(out) > MAX_DATA_FILE_BYTES:
        raise DataError(path, f"decompresses to over the {MAX_DATA_FILE_BYTES / MIB:,.0f} MiB limit for a data file")
    return out


def _utf8_problem(path: Path, data: bytes, err: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, err.start) + 1
    where = "after decompression" if path.name.endswith(".gz") else ""
    problem = f"not valid UTF-8: byte 0x{data[err.start]:02x} at offset {err.start} (line {line})"
    if where:
        problem += f" {where}"
    if data.startswith(_GZIP_MAGIC):
        # The commonest cause: a compressed file whose name lost its `.gz`.
        problem += "; the file looks gzip-compressed, name it *.gz"
    return problem

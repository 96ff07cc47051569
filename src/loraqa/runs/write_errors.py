"""Telling a failed write (disk full, read-only, over quota) from a bug, whoever raised it.

Python's own writes raise `OSError` with an errno. The libraries a save goes through do not:
torch.save reports a full disk as `RuntimeError: basic_ios::clear: iostream error` (then, while
handling it, a second `RuntimeError: ... unexpected pos`), and the Rust libraries (tokenizers,
safetensors) as a plain `Exception` or `SafetensorError` whose message ends `(os error 28)`.
`write_failure` finds the errno in the exception chain or the message, and, for an error raised
inside a save that names none (torch's), asks the filesystem whether it is full or read-only.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The errors a user fixes by freeing space, remounting or changing permissions: never a bug.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG}
# Rust's io::Error display: "No space left on device (os error 28)".
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
# Below this much room left, a save that failed without saying why failed for room: a failed write
# has filled what was left, and no checkpoint or adapter fits in under a mebibyte.
FULL_BELOW_BYTES = 1024 * 1024


def write_failure(exc: BaseException, path: str | Path, *, inside_save: bool = False) -> OSError | None:
    """The `OSError(errno, strerror, filename)` behind `exc`, raised while writing under `path`;
    None when `exc` is not a write failure (a bug or another error, to be raised as it is).

    The errno comes from an OSError in the chain (`__cause__`/`__context__`) or an `(os error N)`
    in a message. `inside_save`: `exc` came out of a save call, so an error naming no errno
    (torch.save's RuntimeError) is a write failure when `path`'s filesystem is read-only or full.
    """
    for link in _chain(exc):
        code = link.errno if isinstance(link, OSError) else _errno_in_message(link)
        if code in WRITE_ERRNOS:
            filename = link.filename if isinstance(link, OSError) and link.filename else path
            return OSError(code, os.strerror(code), str(filename))
    if inside_save and _may_be_io(exc):
        code = filesystem_problem(path)
        if code is not None:
            return OSError(code, os.strerror(code), str(path))
    return None


def filesystem_problem(path: str | Path) -> int | None:
    """EROFS when `path`'s filesystem is mounted read-only, ENOSPC when it has under
    FULL_BELOW_BYTES left for this user, else None. `path` need not exist yet."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        info = os.statvfs(existing)
    except OSError:
        return None
    if info.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if info.f_bavail * info.f_frsize < FULL_BELOW_BYTES:
        return errno.ENOSPC
    return None


def _may_be_io(exc: BaseException) -> bool:
    """The kinds of error a writer reports I/O with when it names no errno: an OSError, or a bare
    RuntimeError or Exception (torch's C++ streams). A subclass (KeyError, torch.OutOfMemoryError)
    means something else, even on a full disk."""
    return isinstance(exc, OSError) or type(exc) in (RuntimeError, Exception)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _errno_in_message(exc: BaseException) -> int | None:
    match = _RUST_OS_ERROR.search(str(exc))
    return int(match.group(1)) if match else None


@contextmanager
def saving(path: str | Path):
    """Run a save into `path`: a write failure inside comes out as the OSError `write_failure`
    finds (errno, strerror, the file or `path`), whatever the library raised; anything else as is."""
    try:
        yield
    except Exception as exc:
        failure = write_failure(exc, path, inside_save=True)
        if failure is None:
            raise
        raise failure from exc

"""Writes that a crash or a power cut cannot leave half done: write beside the target, then rename.

`os.replace` is atomic on POSIX for files and for directories renamed onto a missing name. A
directory that already exists is first moved aside, so at every instant either the old or the new
complete copy exists under a name the reader recognises (`RunDirectory` puts an aside copy back if
a crash came between the two renames).

Durability: a rename is only as durable as what it points at, so the new contents are fsynced
before the rename and the parent directory after it; without the second fsync a power cut can
bring back the old name, or neither.

Permissions: temporary files and folders are made private (0600/0700) by `tempfile`; the results
get what the user's umask gives (0644/0755 under umask 022), like any other tool's output. That
holds for what libraries write into a directory too: safetensors writes its files 0600 (a private
temporary renamed into place), so `replace_directory` gives every file the umask's mode.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace `path` whole with `text` (UTF-8): readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_text_exclusive(path: str | Path, text: str) -> None:
    """Create `path` holding `text`, only if no file, folder or link (even a dangling one) has that name.

    Raises FileExistsError otherwise. The name appears with the complete contents: the text goes to
    a temporary sibling that is hard-linked to `path` (link(2) never replaces and never follows a
    link at the new name, as O_CREAT|O_EXCL|O_NOFOLLOW), so of two writers racing for one new name
    exactly one succeeds.
    """
    path = Path(path)
    tmp = _write_temp(path, text)
    try:
        try:
            os.link(tmp, path)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            _claim_then_replace(tmp, path)  # a filesystem without hard links (FAT, some network mounts)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(path.parent)


_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def _claim_then_replace(tmp: Path, path: Path) -> None:
    # O_EXCL claims the name (still exclusive); the rename then gives it the complete contents.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    os.close(fd)
    os.replace(tmp, path)


def _write_temp(path: Path, text: str) -> Path:
    """A fsynced temporary sibling of `path` holding `text`, with the umask's permissions."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


@contextmanager
def atomic_directory(target: str | Path):
    """Yield a fresh temporary directory; on success it replaces `target` whole, on failure it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield tmp
        replace_directory(tmp, target)  # which gives the umask's modes (mkdtemp made it 0700)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_directory(source: Path, target: Path) -> None:
    """Rename `source` to `target` durably; an existing `target` is moved aside (`.NAME.old-*`) and removed.

    Every file and folder under `source` is fsynced first and `target`'s parent after the rename, so
    once this returns the new `target` survives a power cut.
    """
    source, target = Path(source), Path(target)
    apply_umask_tree(source)
    fsync_tree(source)
    if not target.exists():
        os.replace(source, target)
        fsync_directory(target.parent)
        return
    # os.replace cannot overwrite a non-empty directory; a fresh aside name never collides.
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, aside / target.name)
    os.replace(source, target)
    fsync_directory(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


def apply_umask_tree(root: Path) -> None:
    """Give `root` and every file and folder under it the mode a plain `open`/`mkdir` would (0644/0755
    under umask 022), keeping only whether a file is executable; links are left alone."""
    umask = current_umask()
    os.chmod(root, 0o777 & ~umask)
    for folder, folders, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                executable = os.stat(path).st_mode & 0o111
                os.chmod(path, (0o777 if executable else 0o666) & ~umask)
        for name in folders:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o777 & ~umask)


def fsync_tree(root: Path) -> None:
    """fsync every regular file and folder under `root` (and `root`), deepest first."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            file = os.path.join(folder, name)
            if os.path.isfile(file) and not os.path.islink(file):
                fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_directory(Path(folder))


def fsync_directory(folder: Path) -> None:
    """Make the names in `folder` (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # some filesystems cannot fsync a directory
            raise
    finally:
        os.close(fd)


def current_umask() -> int:
    mask = os.umask(0)  # the only way to read it; set straight back
    os.umask(mask)
    return mask

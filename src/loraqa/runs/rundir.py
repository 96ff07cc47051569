"""A run directory: one training run's config, checkpoints, adapter and evaluations.

Guards: a lock file held with `flock` while a process trains (the kernel releases it if the process
dies, even by kill -9), so a second training into the same directory refuses instead of
interleaving; the lock file is opened without following links and written only once the lock is
held and the run accepted. A directory holding any loraqa output (a run, an evaluation, predictions,
a report) is never written over unless `--overwrite` is given; `--resume` needs a run to resume and
the same configuration. Leftovers of saves a crash interrupted are cleared when the run is opened.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import stat
from pathlib import Path

import yaml

from loraqa.config.loader import config_to_dict, save_config
from loraqa.config.schema import RunConfig
from loraqa.errors import RunDirError
from loraqa.runs.files import (
    ADAPTER_DIR,
    BASELINE_DIR,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    EVALUATION_FILES,
    LOCK_FILE,
    RUN_CONTENTS,
    STAGING_DIR,
    VALIDATION_DIR,
)

# Names atomic.py gives work in progress: `.NAME.tmp-XXXXXXXX` and `.NAME.old-XXXXXXXX` folders,
# `.NAME.XXXXXXXX.tmp` files.
_IN_PROGRESS = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<kind>tmp|old)-[A-Za-z0-9_]+|[A-Za-z0-9_]+\.tmp)$")
_CHECKPOINT_NAME = re.compile(r"^checkpoint-\d+$")


def loraqa_outputs(path: str | Path) -> list[str]:
    """The names in `path` that loraqa wrote: run files, and folders holding an evaluation (`eval/`,
    `eval-base/`, one per decoding). Empty when `path` is missing or holds none."""
    path = Path(path)
    if not path.is_dir():
        return []
    found = [name for name in RUN_CONTENTS if os.path.lexists(path / name)]
    for child in sorted(path.iterdir(), key=lambda p: p.name):
        is_folder = child.name not in found and child.is_dir() and not child.is_symlink()
        if is_folder and any(os.path.lexists(child / name) for name in EVALUATION_FILES):
            found.append(child.name)
    return found


class RunDirectory:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def adapter(self) -> Path:
        return self.path / ADAPTER_DIR

    @property
    def baseline(self) -> Path:
        return self.path / BASELINE_DIR

    @property
    def validation(self) -> Path:
        return self.path / VALIDATION_DIR

    def holds_run(self) -> bool:
        return (self.path / CONFIG_FILE).exists()

    def check_for_training(self, config: RunConfig, *, resume: bool, overwrite: bool, same_config: bool = True) -> None:
        """Raise RunDirError when this directory may not receive the run; reads only (no lock), so
        the command line can refuse before any model loads (`same_config=False` there: the config is
        compared once the model has fitted its window). `open_for_training` checks again."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} exists and is not a directory")
        if self.path.is_dir():
            self._check_may_receive(config, resume, overwrite, same_config)
        elif resume:
            raise RunDirError(f"{self.path} holds no run to resume (no {CONFIG_FILE}); drop --resume")

    def open_for_training(self, config: RunConfig, *, resume: bool, overwrite: bool) -> None:
        """Lock the directory and check it may receive this run; write the resolved config.

        A refusal changes nothing in the directory (the lock file included)."""
        self.check_for_training(config, resume=resume, overwrite=overwrite)  # before creating the lock file
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._check_may_receive(config, resume, overwrite)  # again: another process may have been first
            if not resume:
                self._clear(loraqa_outputs(self.path))  # only --overwrite gets here with outputs
            self._clean_interrupted_saves()
            save_config(config, self.path / CONFIG_FILE)
            self._write_owner()
        except BaseException:
            self.release()
            raise

    def _check_may_receive(self, config: RunConfig, resume: bool, overwrite: bool, same_config: bool = True) -> None:
        if resume:
            if not self.holds_run():
                raise RunDirError(f"{self.path} holds no run to resume (no {CONFIG_FILE}); drop --resume")
            if same_config:
                self._check_same_config(config)
            return
        existing = loraqa_outputs(self.path)
        if existing and not overwrite:
            what = "a run" if self.holds_run() else "loraqa output"
            raise RunDirError(
                f"{self.path} already holds {what} ({', '.join(existing)}); use --resume to continue a run, "
                "--overwrite to replace it, or choose another name/output_dir"
            )

    def _lock(self) -> None:
        lock = self.path / LOCK_FILE
        try:
            # No O_TRUNC: the file is written only once the lock is ours and the run accepted.
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunDirError(
                    f"{lock} is a symbolic link; refusing to follow it (remove it and run again)"
                ) from None
            raise RunDirError(f"cannot open the run lock {lock}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunDirError(f"{lock} is not a regular file; remove it and run again")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(
                f"{self.path} is in use by a running loraqa process (pid {owner}); wait for it or use another output_dir"
            ) from None
        self._lock_fd = fd

    def _write_owner(self) -> None:
        assert self._lock_fd is not None, "written only while the lock is held"
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check_same_config(self, config: RunConfig) -> None:
        saved = yaml.safe_load((self.path / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        current = config_to_dict(config)
        for key in _differences(saved, current):
            raise RunDirError(
                f"--resume with a different config: '{key}' changed since the run started ({self.path / CONFIG_FILE})"
            )

    def _clear(self, names: list[str]) -> None:
        for name in names:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif os.path.lexists(target):
                target.unlink()

    def _clean_interrupted_saves(self) -> None:
        """Remove what a crash left of a save (temporary files and folders, the checkpoint staging
        area); a complete copy that was moved aside and not yet replaced is put back."""
        shutil.rmtree(self.checkpoints / STAGING_DIR, ignore_errors=True)
        _clean_in_progress(self.path, lambda name: name in RUN_CONTENTS)
        _clean_in_progress(self.baseline, lambda name: name in EVALUATION_FILES)
        _clean_in_progress(self.checkpoints, lambda name: bool(_CHECKPOINT_NAME.match(name)))


def _clean_in_progress(folder: Path, ours) -> None:
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = _IN_PROGRESS.match(entry.name)
        if not match or not ours(match["name"]) or entry.is_symlink():
            continue
        target, aside = folder / match["name"], entry / match["name"]
        if match["kind"] == "old" and aside.is_dir() and not os.path.lexists(target):
            os.replace(aside, target)  # the crash came between the two renames of replace_directory
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys.extend(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys

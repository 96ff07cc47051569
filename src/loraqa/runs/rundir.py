"""A run directory: one training run's config, checkpoints, adapter and evaluations.

Guards: a lock file held with `flock` while a process trains (the kernel releases it if the process
dies, even by kill -9), so a second training into the same directory refuses instead of
interleaving; an existing run is never replaced unless `--overwrite` is given; `--resume` needs a
run to resume and the same configuration.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import yaml

from loraqa.config.loader import config_to_dict, save_config
from loraqa.config.schema import RunConfig
from loraqa.errors import RunDirError

CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"
RUN_CONTENTS = (CONFIG_FILE, "checkpoints", "adapter", "baseline", "metrics.json", "predictions.json",
                "predictions.jsonl", "train_log.jsonl", "summary.json")  # fmt: skip


class RunDirectory:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_handle = None

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    @property
    def baseline(self) -> Path:
        return self.path / "baseline"

    def holds_run(self) -> bool:
        return (self.path / CONFIG_FILE).exists()

    def open_for_training(self, config: RunConfig, *, resume: bool, overwrite: bool) -> None:
        """Lock the directory and check it may receive this run; write the resolved config."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} exists and is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        if resume:
            if not self.holds_run():
                raise RunDirError(f"{self.path} holds no run to resume (no {CONFIG_FILE}); drop --resume")
            self._check_same_config(config)
        elif self.holds_run() or self.checkpoints.exists() or self.adapter.exists():
            if not overwrite:
                raise RunDirError(
                    f"{self.path} already holds a run; use --resume to continue it, --overwrite to replace it, "
                    "or choose another name/output_dir"
                )
            self._clear()
        save_config(config, self.path / CONFIG_FILE)

    def _lock(self) -> None:
        handle = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise RunDirError(f"{self.path} is in use by a running loraqa process (pid {owner}); wait for it or use another output_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    def release(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def _check_same_config(self, config: RunConfig) -> None:
        saved = yaml.safe_load((self.path / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        current = config_to_dict(config)
        for key in _differences(saved, current):
            raise RunDirError(f"--resume with a different config: '{key}' changed since the run started ({self.path / CONFIG_FILE})")

    def _clear(self) -> None:
        for name in RUN_CONTENTS:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys.extend(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys

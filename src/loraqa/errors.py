"""Errors the user can fix. The CLI prints them as one line, without a traceback, and exits non-zero."""

from __future__ import annotations


class LoraqaError(Exception):
    """Base of every error caused by the user's input, files or environment."""


class ConfigError(LoraqaError):
    """A configuration key is unknown, mistyped, out of range or contradicts another."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"config key '{key}': {problem}")


class FlagError(ConfigError):
    """A command-line flag is missing, contradicts another, or names something unusable.

    A ConfigError (callers that catch those still do), worded for the flag: `--output: ...`.
    """

    def __init__(self, flag: str, problem: str):
        self.key = flag
        self.problem = problem
        LoraqaError.__init__(self, f"{flag}: {problem}")


class DataError(LoraqaError):
    """A data file or one of its records cannot be used.

    The message names the file, the record (question id, or line/row number) and the problem.
    """

    def __init__(self, path: str, problem: str, record: str | None = None):
        self.path = str(path)
        self.record = record
        self.problem = problem
        where = f"{self.path}: record {record}" if record is not None else self.path
        super().__init__(f"{where}: {problem}")


class AdapterError(LoraqaError):
    """An adapter directory is missing files, corrupt, or belongs to another base model."""


class RunDirError(LoraqaError):
    """The run directory is in use, already holds a run, or cannot be written."""


class DeviceError(LoraqaError):
    """The requested device or precision is not available on this machine."""


class TrainingError(LoraqaError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


class LaunchError(LoraqaError):
    """A one-process command was started as several processes (torchrun, accelerate launch)."""

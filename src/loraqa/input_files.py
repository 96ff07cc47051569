"""What loraqa accepts as an input file before reading a byte of it: a regular file of a sane size.

Every file loraqa reads on the user's behalf (configs, data files, predict inputs, adapter files)
goes through `input_file_problem` first, so `/dev/zero`, a FIFO, a directory or a 40 GB file is a
one-line error instead of a hang, a `MemoryError` or an `IsADirectoryError` traceback. Callers wrap
the problem in their own error type (ConfigError, DataError, AdapterError), which names the file
the way the user wrote it.

A JSON object or YAML mapping that gives one key twice is refused too (`unique_keys` for JSON,
`config.loader` for YAML): both formats would silently keep the last value, so `{"lr": 1e-4, ...,
"lr": 1}` would train on a value the reader of the file never noticed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
# Why these sizes: the largest SQuAD file (train v2.0) is 42 MB; a config is a few KB; an adapter's
# JSON files are a few KB. Anything far above these is a mistake or an attack, not an input.
MAX_CONFIG_BYTES = 1 * MIB
MAX_JSON_SIDECAR_BYTES = 1 * MIB
MAX_DATA_FILE_BYTES = 2048 * MIB


def input_file_problem(path: str | Path, max_bytes: int) -> str | None:
    """Why `path` cannot be read as an input file, or None when it can.

    Follows links (a link to a regular file is fine), then requires a regular file no larger than
    `max_bytes`. Never opens the file, so a device or FIFO cannot block the caller.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "file not found"
    except NotADirectoryError:
        return "file not found (a part of the path is not a directory)"
    except PermissionError:
        return "permission denied"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a device, FIFO or socket)"
    if info.st_size > max_bytes:
        return f"is {info.st_size / MIB:,.1f} MiB, over the {max_bytes / MIB:,.0f} MiB limit for this kind of file"
    return None


class DuplicateKeyError(ValueError):
    """One JSON object or YAML mapping names `key` twice. A ValueError, as json.loads' own errors are."""

    def __init__(self, key: Any):
        self.key = key
        super().__init__(
            f"the key {key!r} is given twice in one object (JSON and YAML would keep the last; give it once)"
        )


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for json.loads on user input: the object, or DuplicateKeyError naming
    the first key given twice."""
    obj = dict(pairs)
    if len(obj) != len(pairs):  # the common case costs one dict build, as json.loads' own
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return obj

"""The confidence calibration an adapter carries: `calibration.json` beside its weights.

Written after training's evaluation (`pipeline/evaluate_phase.py`: fitted on the validation split),
read by every answering path (`inference.answer.answer`: CLI, Python API, server), so a confidence
means the same wherever the adapter answers. Data, never code: a method name and numbers, checked
here; an adapter without the file (trained before loraqa calibrated, or without validation) answers
with its raw confidences.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from loraqa.atomic import write_json_atomic
from loraqa.errors import AdapterError
from loraqa.input_files import MAX_JSON_SIDECAR_BYTES, input_file_problem
from loraqa.metrics.calibration import Calibrator

CALIBRATION_FILE = "calibration.json"


def write_calibration(adapter_dir: str | Path, calibrator: Calibrator, fitted_on: str) -> None:
    write_json_atomic(Path(adapter_dir) / CALIBRATION_FILE, {**calibrator.as_dict(), "fitted_on": fitted_on})


def read_calibration(adapter_dir: str | Path | None) -> Calibrator | None:
    """The adapter's calibrator, None without one; AdapterError (one line) for a malformed file."""
    if adapter_dir is None:
        return None
    path = Path(adapter_dir) / CALIBRATION_FILE
    if not path.exists():
        return None
    stamp = path.stat()
    return _read(str(path), stamp.st_mtime_ns, stamp.st_size)


@lru_cache(maxsize=64)  # the server answers many requests per adapter: read each version of the file once
def _read(path: str, _mtime_ns: int, _size: int) -> Calibrator:
    problem = input_file_problem(path, MAX_JSON_SIDECAR_BYTES)
    if problem:
        raise AdapterError(f"{path}: {problem}")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        calibrator = Calibrator.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise AdapterError(f"{path}: not a calibration ({error})") from None
    if data.get("method") not in ("temperature", "isotonic", "identity"):
        raise AdapterError(f"{path}: unknown calibration method {data.get('method')!r}")
    numbers = [calibrator.temperature, *calibrator.knots_x, *calibrator.knots_y]
    if not all(math.isfinite(x) for x in numbers) or calibrator.temperature <= 0:
        raise AdapterError(f"{path}: calibration numbers must be finite (and the temperature above 0)")
    if len(calibrator.knots_x) != len(calibrator.knots_y) or any(not 0 <= y <= 1 for y in calibrator.knots_y):
        raise AdapterError(f"{path}: isotonic knots must pair up and map into [0, 1]")
    return calibrator

"""Datasets shipped inside the package, by name. See `bundled/squad/ATTRIBUTION.md` for licences."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# name -> file under loraqa/data/bundled/
BUNDLED = {
    "squad-v1.1:train": "squad/train-v1.1.reconstructed.json.gz",  # 87,599 questions; ids made up
    "squad-v1.1:dev": "squad/dev-v1.1.json.gz",  # 10,570 questions; the official file
}


def is_bundled(source: str) -> bool:
    return source in BUNDLED


def bundled_path(name: str) -> Path:
    """The file behind a bundled name. The package is installed unzipped, so this is a real path."""
    return Path(str(resources.files("loraqa.data").joinpath("bundled", BUNDLED[name])))

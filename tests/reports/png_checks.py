"""Checks that a PNG is what a reader would call a plot: the size intended and not one flat colour."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib.image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG standard puts first."""
    data = path.read_bytes()[:24]
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_real_plot(path: Path, size: tuple[int, int]) -> None:
    assert png_size(path) == size
    pixels = matplotlib.image.imread(path)[..., :3]
    assert pixels.std() > 0.02, f"{path} is (nearly) one flat colour"
    # A plot has ink: a fair share of pixels clearly darker than the white background.
    assert (pixels.mean(axis=-1) < 0.6).mean() > 0.005, f"{path} has almost nothing drawn"
    # Axes, ticks and labels are grey; curves and bars are coloured: some pixels must be saturated.
    saturation = pixels.max(axis=-1) - pixels.min(axis=-1)
    assert (saturation > 0.3).mean() > 0.002, f"{path} has axes but no coloured data drawn"

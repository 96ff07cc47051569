"""loraqa's version, on the ground floor so any module may record it without importing the public API."""

__version__ = "0.1.0"

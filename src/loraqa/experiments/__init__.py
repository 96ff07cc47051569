"""Experiments made of several ordinary runs: `compare` (several configs, identical questions)."""

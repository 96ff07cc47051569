"""Sweeps: grids and searches over run configs as one Optuna study (see worker.py)."""

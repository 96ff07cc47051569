"""QA formulations behind one interface; `choose_formulation` picks one from the architecture.

Members are imported on first use (PEP 562), so the config layer can read `config_rules` when a config
loads without importing torch and every formulation.
"""

from __future__ import annotations

from importlib import import_module

_HOMES = {
    "FORMULATIONS": "registry",
    "choose_formulation": "registry",
    "formulation_name_for": "registry",
    "Formulation": "base",
    "PredictResult": "base",
    "PredictSettings": "base",
    "Prediction": "base",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_HOMES)

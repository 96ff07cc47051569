"""The training pipeline as plain phases with typed results, called by everything that trains.

    prepared = prepare(config, resume=..., overwrite=...)   # checks, data, model + LoRA, run dir claimed
    base     = baseline(prepared)                           # the base model alone on the test split, or None
    fitted   = fit(prepared, callbacks)                     # QATrainer: built here and nowhere else
    adapter  = save(prepared, fitted)                       # run_dir/adapter
    scores   = evaluate(prepared)                           # test (written) + validation metrics
    finish(prepared, summary)                               # summary.json: the one place a run ends

`run_training` (train.py) runs them in that order for `loraqa train`, sweeps and comparisons.
Only training phases live here: evaluating a saved model (`loraqa eval`) is answering, in
`inference/`. Layer: above training and inference (which never import this), below experiments,
reports, serving and the CLI.
"""

from loraqa.pipeline.evaluate_phase import Evaluation, baseline, evaluate
from loraqa.pipeline.fit_phase import FitResult, fit
from loraqa.pipeline.prepare_phase import Prepared, prepare
from loraqa.pipeline.record import finish
from loraqa.pipeline.save_phase import save
from loraqa.pipeline.train import run_training

__all__ = [
    "Evaluation",
    "FitResult",
    "Prepared",
    "baseline",
    "evaluate",
    "finish",
    "fit",
    "prepare",
    "run_training",
    "save",
]

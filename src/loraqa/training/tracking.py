"""Track a run where users already look: TensorBoard, Weights & Biases, MLflow (`training.report_to`).

Two moments, one run per backend:
- `trainer_callbacks(config, run_dir)`, when the Trainer is built, starts the W&B and MLflow runs,
  so that transformers' own WandbCallback and MLflowCallback (named in TrainingArguments.report_to)
  log the training loss, learning rate and validation metrics into them, and returns a
  TensorBoardCallback writing under RUN/tensorboard.
- `report_run(...)`, at the end of the pipeline, sends what happens outside Trainer (baseline, test
  and validation metrics, failure counts, trainable parameters and their percentage, adapter size on disk, wall
  times, the resolved config as hyperparameters) to the same runs through a `Tracker`, then closes them.

Where runs go: TensorBoard to RUN/tensorboard (`tensorboard --logdir runs/`); W&B to RUN/wandb
(WANDB_DIR wins), offline when no account is configured (`wandb sync` uploads it later); MLflow to
MLFLOW_TRACKING_URI, else `sqlite:///RUNS/mlflow.db` in the runs folder (MLflow 3's recommended
local store). The experiment (W&B project) is the run folder's parent, or "loraqa" for `runs/`.
RUN/tracking.json keeps the W&B and MLflow run ids, so `--resume` continues the same runs.
"""

from __future__ import annotations

import dataclasses
import json
import netrc
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

from loraqa.atomic import write_json_atomic
from loraqa.config.schema import RunConfig
from loraqa.config.validate import tracking_backends
from loraqa.runs.files import ADAPTER_DIR, TENSORBOARD_DIR, TRACKING_FILE
from loraqa.runs.summary import RunSummary

# What this process started, so a run that died mid-way (its runs still open) cannot leak its
# MLflow or W&B run into the next run started in the same process (compare, sweeps).
_started: dict = {}


def say(message: str) -> None:
    print(f"loraqa: {message}", file=sys.stderr, flush=True)


def experiment_name(run_dir: str | Path) -> str:
    """The run folder's parent (a comparison's or sweep's name), or "loraqa" for the plain runs folder."""
    parent = Path(run_dir).resolve().parent.name
    return "loraqa" if parent in ("", "runs") else parent


def flat_config(config: RunConfig) -> dict[str, str | int | float | bool]:
    """The resolved config as `section.key` hyperparameters (top-level keys as `run.name`,
    `run.output_dir`, apart from TrainingArguments' `output_dir` that MLflowCallback logs); lists
    and None as JSON text."""
    flat: dict = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, (bool, int, float, str)):
                flat[prefix + key] = value
            else:
                flat[prefix + key] = json.dumps(value)

    sections = {k: v for k, v in dataclasses.asdict(config).items() if isinstance(v, dict)}
    walk({"run": {k: v for k, v in dataclasses.asdict(config).items() if k not in sections}, **sections}, "")
    return flat


def run_metrics(summary: RunSummary, parameters: tuple[int, int] | None, adapter_dir: Path | None) -> dict[str, float]:
    """The numbers a run ends with, as `group/name` (nested dicts such as failure counts as `group/a/b`)."""
    metrics: dict[str, float] = {}

    def add(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                add(f"{prefix}/{key}", inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[prefix] = float(value)

    add("baseline", summary.baseline)
    add("test", summary.adapter)
    add("validation", summary.validation)
    add("time/train_seconds", summary.train_seconds)
    add("time/total_seconds", summary.total_seconds)
    add("run/train_loss", summary.train_loss)
    add("run/peak_memory_mib", summary.peak_memory_mib)  # its kind is in the summary (training/memory.py)
    if parameters:
        trainable, total = parameters
        metrics.update(
            {
                "run/trainable_parameters": trainable,
                "run/total_parameters": total,
                "run/trainable_percent": 100 * trainable / total,
            }
        )
    if adapter_dir is not None and adapter_dir.is_dir():
        metrics["run/adapter_bytes"] = float(sum(f.stat().st_size for f in adapter_dir.rglob("*") if f.is_file()))
    return metrics


# --- before training: runs that transformers' callbacks log into ---------------------------------


def trainer_callbacks(config: RunConfig, run_dir: str | Path) -> list:
    """Start this run's W&B and MLflow runs (continuing them when RUN/tracking.json names them) and
    return the TrainerCallbacks transformers does not add from `report_to` (TensorBoard's)."""
    backends, run_dir = tracking_backends(config.training), Path(run_dir)
    saved_file = run_dir / TRACKING_FILE
    saved = json.loads(saved_file.read_text(encoding="utf-8")) if saved_file.is_file() else {}
    ids = {}
    if "mlflow" in backends:
        ids["mlflow_run_id"] = _start_mlflow(config, run_dir, saved.get("mlflow_run_id"))
    if "wandb" in backends:
        ids["wandb_run_id"] = _start_wandb(config, run_dir, saved.get("wandb_run_id"))
    if ids:
        write_json_atomic(saved_file, ids)
    callbacks = []
    if "tensorboard" in backends:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))))
    return callbacks


def mlflow_tracking_uri(run_dir: Path) -> str:
    """MLFLOW_TRACKING_URI, else a SQLite store in the runs folder (`runs/` above the run, else its parent)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    resolved = run_dir.resolve()
    folder = next((p for p in resolved.parents if p.name == "runs"), resolved.parent)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _start_mlflow(config: RunConfig, run_dir: Path, run_id: str | None) -> str:
    import mlflow

    _end_stale_mlflow(mlflow)
    uri = mlflow_tracking_uri(run_dir)
    user_set = mlflow.is_tracking_uri_set() and mlflow.get_tracking_uri() != _started.get("mlflow_uri")
    if not user_set or os.environ.get("MLFLOW_TRACKING_URI"):  # a script's own set_tracking_uri wins
        mlflow.set_tracking_uri(uri)
        _started["mlflow_uri"] = uri
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or experiment_name(run_dir)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        local = urlparse(mlflow.get_tracking_uri()).scheme == "sqlite"
        # A SQLite store's artifacts would otherwise land in ./mlruns of whatever the working folder is.
        location = (Path(urlparse(mlflow.get_tracking_uri()).path).parent / "mlartifacts").as_uri() if local else None
        experiment_id = mlflow.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    nested = mlflow.active_run() is not None  # a script's own run: this one goes beneath it
    if run_id:
        active = mlflow.start_run(run_id=run_id, nested=nested)
    else:
        active = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=config.name,
            nested=nested,
            tags={"loraqa.run_dir": str(run_dir.resolve())},
        )
    _started["mlflow"] = active.info.run_id
    say(f"MLflow run {active.info.run_id} in experiment '{name}' at {mlflow.get_tracking_uri()}")
    return active.info.run_id


def _end_stale_mlflow(mlflow) -> None:
    active = mlflow.active_run()
    if active is not None and active.info.run_id == _started.pop("mlflow", None):
        mlflow.end_run(status="FAILED")  # the run that started it never reached report_run


def wandb_account_configured() -> bool:
    """An API key in WANDB_API_KEY or in the netrc file `wandb login` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _start_wandb(config: RunConfig, run_dir: Path, run_id: str | None) -> str:
    import wandb

    if wandb.run is not None and wandb.run.id == _started.pop("wandb", None):
        wandb.finish(exit_code=1)  # the run that started it never reached report_run
    mode = None  # WANDB_MODE (offline, disabled, online) decides, when set
    if not os.environ.get("WANDB_MODE") and not wandb_account_configured():
        mode = "offline"
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT") or experiment_name(run_dir),
        name=config.name,
        dir=os.environ.get("WANDB_DIR") or str(run_dir),
        mode=mode,
        id=run_id,
        resume="allow" if run_id else None,
        config=dataclasses.asdict(config),
    )
    _started["wandb"] = run.id
    folder = Path(run.dir).parent  # run.dir is the run's files/ folder
    where = f"offline in {folder} (upload later: wandb sync {folder})" if run.offline else run.url
    say(f"W&B run {run.id}: {where}")
    return run.id


# --- after training: what happens outside Trainer ------------------------------------------------


class Tracker:
    """The run's open backends; each method sends the same thing to all of them."""

    def __init__(self, backends: list):
        self._backends = backends

    @classmethod
    def open(cls, config: RunConfig, run_dir: str | Path) -> Tracker:
        """Reattach to the runs `trainer_callbacks` started (TensorBoard: the same log folder)."""
        names, run_dir = tracking_backends(config.training), Path(run_dir)
        saved_file = run_dir / TRACKING_FILE
        saved = json.loads(saved_file.read_text(encoding="utf-8")) if saved_file.is_file() else {}
        backends = []
        if "tensorboard" in names:
            backends.append(_TensorBoard(run_dir / TENSORBOARD_DIR, dataclasses.asdict(config)))
        if "mlflow" in names and saved.get("mlflow_run_id"):
            backends.append(_MLflow(saved["mlflow_run_id"]))
        if "wandb" in names and saved.get("wandb_run_id"):
            backends.append(_Wandb(saved["wandb_run_id"]))
        return cls(backends)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._each("log_metrics", metrics, step)

    def log_hparams(self, flat: dict, metrics: dict[str, float]) -> None:
        """`flat`: `section.key` -> value; `metrics`: the final numbers they are judged by."""
        self._each("log_hparams", flat, metrics)

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args) -> None:
        # The run's results are already on disk: a tracking server that fails now costs a warning,
        # not the run.
        for backend in self._backends:
            try:
                getattr(backend, method)(*args)
            except Exception as exc:  # noqa: BLE001 - any backend's error, reported in one line
                say(f"warning: {type(backend).__name__.strip('_')} could not record the run: {exc}")


def report_run(
    config: RunConfig, run_dir: str | Path, summary: RunSummary, *, step: int, parameters: tuple[int, int] | None = None
) -> None:
    """Send the end-of-run numbers and the resolved config to every backend, then close their runs."""
    if not tracking_backends(config.training):
        return
    run_dir = Path(run_dir)
    metrics = run_metrics(summary, parameters, run_dir / ADAPTER_DIR)
    tracker = Tracker.open(config, run_dir)
    tracker.log_metrics(metrics, step)
    tracker.log_hparams(flat_config(config), metrics)
    tracker.close()


class _TensorBoard:
    def __init__(self, log_dir: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.config = config  # shown as YAML in the Text tab
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for tag, value in metrics.items():
            self._writer.add_scalar(tag, value, step)

    def log_hparams(self, flat: dict, metrics: dict[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams

        text = yaml.safe_dump(self.config, sort_keys=False)
        self._writer.add_text("config", "    " + text.replace("\n", "\n    "))  # indented: markdown code
        # The HParams tab, in this run's folder (add_hparams would make a new run beside it).
        for summary in hparams(flat, {tag: value for tag, value in metrics.items() if tag.startswith("test/")}):
            self._writer.file_writer.add_summary(summary)

    def close(self) -> None:
        self._writer.close()


_MLFLOW_NAME = re.compile(r"[^0-9A-Za-z_\-. :/]")


class _MLflow:
    def __init__(self, run_id: str):
        import mlflow

        self._mlflow = mlflow
        active = mlflow.active_run()
        if active is None or active.info.run_id != run_id:
            mlflow.start_run(run_id=run_id, nested=active is not None)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._mlflow.log_metrics({_MLFLOW_NAME.sub("_", k): v for k, v in metrics.items()}, step=step)

    def log_hparams(self, flat: dict, metrics: dict[str, float]) -> None:
        items = list(flat.items())
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._mlflow.log_params(dict(items[start : start + 100]))

    def close(self) -> None:
        self._mlflow.flush_async_logging()  # MLflowCallback logs asynchronously
        self._mlflow.end_run()
        _started.pop("mlflow", None)


class _Wandb:
    def __init__(self, run_id: str):
        import wandb

        if wandb.run is None or wandb.run.id != run_id:
            raise RuntimeError(f"the W&B run {run_id} is no longer active")
        self._wandb = wandb

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._wandb.log({**metrics, "train/global_step": step})  # WandbCallback's x-axis
        self._wandb.run.summary.update(metrics)

    def log_hparams(self, flat: dict, metrics: dict[str, float]) -> None:
        pass  # the config went in at wandb.init

    def close(self) -> None:
        self._wandb.finish()
        # finish() can return before wandb's service has written the run to disk (seen offline
        # under load: only the file header there); teardown waits for it, so the run is complete
        # for `wandb sync` when loraqa returns. The next run starts the service again.
        self._wandb.teardown()
        _started.pop("wandb", None)

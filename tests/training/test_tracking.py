"""Tracking (`training.report_to`): a real tiny run, read back with each backend's own reader."""

from __future__ import annotations

import json
import struct

import pytest
from run_helpers import tiny_config, tiny_overrides

from loraqa.cli import main
from loraqa.pipeline import run_training


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A SQLite store of the test's own (the default one lives in the runs folder, as here)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_tensorboard_and_mlflow_hold_the_whole_run(tiny_model_dir, qa_files, tmp_path, mlflow_store):
    run_dir = tmp_path / "runs" / "tracked"
    config = tiny_config(
        tiny_model_dir("bert"), qa_files, run_dir, "training.report_to=[tensorboard,mlflow]", "lora.r=4"
    )
    summary = run_training(config)
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    losses = {e["step"]: e["loss"] for e in log if "loss" in e}
    assert sorted(losses) == [1, 2, 3]  # logging_steps=1, max_steps=3

    scalars = _scalars(run_dir / "tensorboard")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([losses[s] for s in (1, 2, 3)])
    assert scalars["test/f1"] == [(3, pytest.approx(summary["adapter"]["f1"]))]
    assert scalars["baseline/f1"] == [(3, pytest.approx(summary["baseline"]["f1"]))]
    assert scalars["run/trainable_parameters"][0][1] > 0
    assert scalars["run/adapter_bytes"][0][1] > 0
    assert scalars["run/peak_memory_mib"] == [(3, pytest.approx(summary["peak_memory_mib"]))]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = json.loads((run_dir / "tracking.json").read_text())["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "loraqa"  # runs/NAME: the project's experiment
    assert run.data.params["lora.r"] == "4"
    assert run.data.params["run.name"] == "run"
    assert run.data.params["training.report_to"] == '["tensorboard", "mlflow"]'
    assert run.data.params["learning_rate"] == "0.01"  # MLflowCallback's TrainingArguments, same run
    assert run.data.metrics["test/f1"] == pytest.approx(summary["adapter"]["f1"])
    assert run.data.metrics["baseline/f1"] == pytest.approx(summary["baseline"]["f1"])
    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(s, pytest.approx(losses[s])) for s in (1, 2, 3)]
    assert len(client.search_runs([run.info.experiment_id])) == 1  # one MLflow run for the whole run


def test_mlflow_defaults_to_a_sqlite_store_in_the_runs_folder(tmp_path, monkeypatch):
    from loraqa.training.tracking import experiment_name, mlflow_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "runs" / "cmp" / "a"
    assert mlflow_tracking_uri(run_dir) == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert experiment_name(run_dir) == "cmp"
    assert experiment_name(tmp_path / "runs" / "a") == "loraqa"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert mlflow_tracking_uri(run_dir) == "http://tracking.example:5000"


def _wandb_records(path) -> list:
    """The records of an offline run's `.wandb` file (what `wandb sync` uploads): a LevelDB-style log
    (7-byte ':W&B' header, 32 KiB blocks of checksum/length/type chunks) of wandb's own protobufs.
    wandb 0.2x dropped its Python reader, so the format is read here."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_writes_a_run_whose_summary_holds_test_f1(tiny_model_dir, qa_files, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "runs" / "wb"
    config = tiny_config(tiny_model_dir("bert"), qa_files, run_dir, "training.report_to=[wandb]", "lora.r=4")
    summary = run_training(config)
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1  # what `wandb sync` uploads
    run_id = json.loads((run_dir / "tracking.json").read_text())["wandb_run_id"]
    records = _wandb_records(offline[0] / f"run-{run_id}.wandb")
    summaries = [r.summary for r in records if r.WhichOneof("record_type") == "summary"]
    final = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for s in summaries for item in s.update}
    assert final["test/f1"] == pytest.approx(summary["adapter"]["f1"])
    assert final["baseline/f1"] == pytest.approx(summary["baseline"]["f1"])
    history = [
        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    losses = [(h["train/global_step"], h["train/loss"]) for h in history if "train/loss" in h]
    assert [step for step, _ in losses] == [1, 2, 3]  # WandbCallback logged into the same run
    updates = [
        r.run.config if r.WhichOneof("record_type") == "run" else r.config
        for r in records
        if r.WhichOneof("record_type") in ("run", "config")
    ]
    config_items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for u in updates for i in u.update}
    lora = config_items["lora"]
    assert lora.get("value", lora)["r"] == 4  # the resolved config, as given to wandb.init
    assert not (run_dir / "tensorboard").exists()


def test_no_tracking_writes_no_event_files(tiny_model_dir, qa_files, tmp_path):
    run_dir = tmp_path / "run"
    run_training(
        tiny_config(tiny_model_dir("bert"), qa_files, run_dir, "training.report_to=none", "evaluation.baseline=false")
    )
    assert not (run_dir / "tensorboard").exists()
    assert not (run_dir / "tracking.json").exists()


@pytest.mark.parametrize(
    "backend, extra", [("wandb", "loraqa[wandb]"), ("mlflow", "loraqa[mlflow]"), ("tensorboard", "tensorboard")]
)
def test_a_backend_not_installed_stops_before_anything_with_one_line(
    backend, extra, tiny_model_dir, qa_files, tmp_path, monkeypatch, capsys
):
    import loraqa.config.validate as validate

    installed = validate.backend_installed
    monkeypatch.setattr(validate, "backend_installed", lambda package: package != backend and installed(package))
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tiny_model_dir("bert"), qa_files, run_dir, f"training.report_to=[{backend}]")
    assert main(["train", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"loraqa: error: config key 'training.report_to': {backend} is not installed; pip install {extra}"]
    assert not run_dir.exists()

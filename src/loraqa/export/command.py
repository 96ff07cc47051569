"""`loraqa export --adapter RUN/adapter --format FORMAT --output DIR`: load, check, write one format."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from loraqa.atomic import atomic_directory
from loraqa.errors import FlagError, LoraqaError
from loraqa.inference.merge import check_output_directory
from loraqa.inference.onnx_model import EXPORT_META_FILE
from loraqa.lora.calibration_file import CALIBRATION_FILE

FORMATS = ("onnx", "gguf", "gguf-lora")


def load_merged(adapter: str, config, base_name: str | None = None, overrides: Iterable[str] = ()):
    """Base + adapter merged in fp32 on the CPU, with the model section the adapter trained with (the
    one loader every command answers through, on a CPU fp32 plan: an export is device-free)."""
    from loraqa.inference.ready import load_for_answering

    on_cpu = dataclasses.replace(config, training=dataclasses.replace(config.training, device="cpu", precision="fp32"))
    return load_for_answering(on_cpu, adapter, base_name=base_name, overrides=overrides, full_precision=True)


def run_export(
    adapter: str,
    fmt: str,
    output: str,
    overwrite: bool,
    config,
    base_name: str | None = None,
    overrides: Iterable[str] = (),
    gguf_type: str = "f16",
    int8: bool = False,
    force: bool = False,
) -> Path:
    """Write `adapter` (merged into its base) as `fmt` into `output`; return the directory written."""
    if fmt not in FORMATS:
        raise FlagError("--format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    if (int8 or force) and fmt != "onnx":
        raise FlagError("--int8", "applies to --format onnx (GGUF has --gguf-type q8_0)")
    target = check_output_directory(output, overwrite)  # before minutes of loading
    if fmt == "gguf-lora":
        from loraqa.export.gguf_lora import write_gguf_lora
        from loraqa.inference.ready import answer_setup

        setup = answer_setup(config, adapter, base_name=base_name, overrides=overrides)  # no weights
        return write_gguf_lora(adapter, target, setup.spec.hf_config)
    if fmt == "gguf":
        from loraqa.export.gguf_model import check_gguf_architecture, write_gguf
        from loraqa.lora.adapter_files import read_adapter_meta

        check_gguf_architecture(str(read_adapter_meta(adapter).get("model_type")))
        ready = load_merged(adapter, config, base_name, overrides)
        return write_gguf(ready, target, gguf_type)
    from loraqa.inference.onnx_model import require_onnx_runtime

    require_onnx_runtime("onnx")  # before minutes of loading
    if int8:
        from loraqa.export.int8 import run_test_questions

        records, settings = run_test_questions(adapter)  # before minutes of loading
    ready = load_merged(adapter, config, base_name, overrides)
    if int8 and graph_kind(ready) != "span":
        raise FlagError("--int8", "applies to span-predicting (QA head) models; generative exports stay fp32")
    written = write_onnx(ready, target)
    if int8:
        from loraqa.export.int8 import write_int8

        summary = write_int8(written, records, settings, force, ready)
        print(
            f"int8 ({summary['recipe']}): F1 {summary['int8']['f1']:.2f} vs {summary['float']['f1']:.2f} float, "
            f"{summary['speedup_over_torch']}x torch fp32's answers per CPU second, on {summary['questions']} test questions"
        )
    return written


def graph_kind(ready) -> str:
    """Which graphs the model needs (`GRAPHS`): from the model's shape, not the formulation's name."""
    if not ready.spec.formulation.generates:
        return "span"
    return "encoder-decoder" if ready.model.config.is_encoder_decoder else "decoder"


def write_onnx(ready, target: Path) -> Path:
    from loraqa.export.onnx import check_graphs, export_graphs, reference_outputs
    from loraqa.export.readme import onnx_readme

    kind = graph_kind(ready)
    with atomic_directory(target) as tmp:
        attention = ready.model.config._attn_implementation
        try:
            ready.model.set_attn_implementation("eager")  # plain matmul + mask: traced exactly by every runtime
            reference = reference_outputs(ready.model, kind)
            graphs = export_graphs(ready.model, kind, tmp)
            check_graphs(tmp, kind, ready.spec.model_type, reference)
        except LoraqaError:
            raise
        except Exception as exc:  # noqa: BLE001 — an architecture the tracer cannot follow
            raise LoraqaError(
                f"cannot export {ready.spec.model_type} to ONNX ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "tested architectures: bert, distilbert, t5, gpt2, llama"
            ) from None
        finally:
            ready.model.set_attn_implementation(attention)  # as loaded: `--int8` times it as `predict` runs it
        write_beside(ready, tmp, {"format": "onnx", "kind": kind, "graphs": graphs})
        (tmp / "README.md").write_text(onnx_readme(ready, kind), encoding="utf-8")
    return target


def write_beside(ready, directory: Path, meta: dict) -> None:
    """config.json, generation_config.json, the tokenizer, the calibration and loraqa's metadata."""
    ready.model.config.save_pretrained(str(directory))
    if ready.spec.formulation.generates and getattr(ready.model, "generation_config", None) is not None:
        ready.model.generation_config.save_pretrained(str(directory))
    ready.tokenizer.save_pretrained(str(directory))
    if ready.adapter and (Path(ready.adapter) / CALIBRATION_FILE).is_file():
        shutil.copyfile(Path(ready.adapter) / CALIBRATION_FILE, directory / CALIBRATION_FILE)
    model_config = dataclasses.asdict(ready.model_config)
    meta = {**meta, "model_config": model_config, "version_2": ready.version_2, "adapter": ready.adapter}
    (directory / EXPORT_META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

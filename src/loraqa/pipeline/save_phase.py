"""Phase `save`: the trained adapter into the run directory's `adapter/` (once)."""

from __future__ import annotations

import time
from pathlib import Path

from loraqa import distributed
from loraqa.console import say
from loraqa.lora.adapter import adapter_meta, save_adapter
from loraqa.pipeline.fit_phase import FitResult
from loraqa.pipeline.prepare_phase import Prepared
from loraqa.runs.write_errors import saving


def save(prepared: Prepared, fit: FitResult) -> Path:
    """Write the adapter (weights, tokenizer, loraqa.json) unless a resumed run's adapter already
    holds these weights; return its directory."""
    started = time.perf_counter()
    run, config, spec = prepared.run, prepared.config, prepared.spec
    if fit.finished is None or fit.finished.weights != run.adapter:
        meta = adapter_meta(
            config.model,
            spec.formulation,
            spec.hf_config,
            prepared.tokenizer,
            prepared.peft_model,
            version_2=prepared.data.version_2,
            config=config,
            quantize_base=config.lora.quantize_base,
        )
        if distributed.is_main():  # [ddp]
            with saving(run.adapter):  # disk full: one OSError naming the adapter, whatever the library raised
                save_adapter(prepared.peft_model, prepared.tokenizer, run.adapter, meta)
            say(f"adapter saved to {run.adapter}")
        distributed.barrier()  # [ddp]
    prepared.phase_seconds["save"] = round(time.perf_counter() - started, 1)
    return run.adapter


def directory_bytes(path: Path) -> int:
    """Size on disk of the files under `path` (links not followed)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())

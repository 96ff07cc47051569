"""Grouped-by-adapter batches vs one mixed batch (peft's `adapter_names`), on one shared base.

    PYTHONPATH=src python bench/serve_mixed.py --adapter a=/tmp/serving-minilm/adapter \
        --adapter b=/tmp/serving-minilm2/adapter --batch 16 --repeats 5
    PYTHONPATH=src python bench/serve_mixed.py --adapter a=/tmp/serving-smollm/adapter --with-base \
        --batch 8 --repeats 3 --max-new-tokens 16      # causal: adapter and base (peft's "__base__")

What `loraqa serve` would do with a batch of questions for several adapters on one base:
(a) grouped: `set_adapter(name)` and one model call per adapter on its questions (what the
    batcher does now), or
(b) mixed: one model call on all questions with `adapter_names=[...]` (peft's mixed-batch
    inference: the base matmuls run once on the whole batch, each LoRA layer splits it by adapter).
The model call is what answer() makes: a forward for an extractive base, `generate` (greedy) for a
causal or seq2seq one, on the formulation's own prompts, loaded as `loraqa serve` loads them
(serving.registry.build_registry). Questions alternate between adapters. Both paths run back to
back in one process, `--repeats` times each after a warm-up, and the outputs are compared
(extractive: logits to 1e-5 and equal argmax; generative: equal token ids). Prints one JSON line
and writes bench/results/serve-mixed-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from record import provenance  # noqa: E402  (bench/record.py, next to this script)

from loraqa.config.loader import load_config  # noqa: E402
from loraqa.data.sources import load_records  # noqa: E402
from loraqa.inference.evaluate import predict_settings  # noqa: E402
from loraqa.lora.adapter import read_adapter_meta  # noqa: E402
from loraqa.serving.registry import BASE_PEFT_NAME, AdapterSource, build_registry  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", action="append", required=True, help="NAME=DIR, adapters on one base")
    parser.add_argument("--with-base", action="store_true", help="also mix in the base alone (peft's __base__)")
    parser.add_argument("--batch", type=int, default=16, help="questions per batch, spread over the adapters")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=16, help="generative bases")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--label", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    sources = [AdapterSource(*text.split("=", 1)) for text in args.adapter]
    base = read_adapter_meta(sources[0].directory)["model_config"]["name"]  # --base-only serves model.name
    config = load_config(
        None, ["training.device=cpu", f"generation.max_new_tokens={args.max_new_tokens}", f"model.name={base}"]
    )
    registry = build_registry(sources, config, base_only=args.with_base)
    served = [registry.adapters[s.name] for s in sources]
    if len(served) + args.with_base < 2 or any(s.peft_name is None for s in served):
        raise SystemExit("give adapters that share one base (two or more, or one with --with-base)")
    model, ready = served[0].ready.model, served[0].ready
    model.eval()
    names = [s.peft_name for s in served] + ([BASE_PEFT_NAME] if args.with_base else [])
    records = load_records("squad-v1.1:dev").records[: args.batch]
    owners = [names[i % len(names)] for i in range(len(records))]
    settings = predict_settings(config, version_2=False)
    inputs = _inputs(ready, records, settings)
    generative = ready.spec.formulation.name != "extractive"
    call = _generate(model, ready.tokenizer, args.max_new_tokens) if generative else _forward(model)

    def grouped():
        out = [None] * len(records)
        for name in names:
            rows = [i for i, owner in enumerate(owners) if owner == name]
            batch = {k: v[rows] for k, v in inputs.items()}
            if name == BASE_PEFT_NAME:
                with model.disable_adapter():
                    result = call(batch)
            else:
                model.set_adapter(name)
                result = call(batch)
            for row, value in zip(rows, result, strict=True):
                out[row] = value
        return out

    def mixed():
        return call(inputs, adapter_names=owners)

    timings = {"grouped": [], "mixed": []}
    with torch.inference_mode():
        answers = {"grouped": grouped(), "mixed": mixed()}  # warm-up, and the outputs compared
        for _ in range(args.repeats):
            for label, run in (("grouped", grouped), ("mixed", mixed)):
                started = time.perf_counter()
                run()
                timings[label].append(time.perf_counter() - started)
    same = _same(answers["grouped"], answers["mixed"], generative, ready.tokenizer.pad_token_id)
    median = {k: statistics.median(v) for k, v in timings.items()}
    row = {
        "base": ready.model_config.name,
        "formulation": ready.spec.formulation.name,
        "adapters": names,
        "batch": len(records),
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "grouped_s": round(median["grouped"], 4),
        "mixed_s": round(median["mixed"], 4),
        "mixed_over_grouped": round(median["mixed"] / median["grouped"], 3),
        "identical": same,
        "all_s": {k: [round(t, 4) for t in v] for k, v in timings.items()},
    }
    print(json.dumps(row), flush=True)
    label = args.label or f"{Path(ready.model_config.name).name}-{ready.spec.formulation.name}"
    out = ROOT / "bench" / "results" / f"serve-mixed-{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**provenance(sys.argv), **row}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _inputs(ready, records, settings) -> dict[str, torch.Tensor]:
    """Padded prompt tensors: question/context pairs (extractive) or the formulation's prompts."""
    tokenizer, config = ready.tokenizer, ready.model_config
    if ready.spec.formulation.name == "extractive":
        return dict(
            tokenizer(
                [r.question for r in records],
                [r.context for r in records],
                truncation="only_second",
                max_length=config.max_seq_length,
                padding=True,
                return_tensors="pt",
            )
        )
    prompts = [ready.spec.formulation.generation_prompt(r, tokenizer, settings) for r in records]
    tokenizer.padding_side = "left" if ready.spec.formulation.name == "causal" else "right"
    return dict(tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt"))


def _forward(model):
    def call(batch, **kwargs):
        out = model(**batch, **kwargs)
        return list(zip(out.start_logits, out.end_logits, strict=True))

    return call


def _generate(model, tokenizer, max_new_tokens: int):
    def call(batch, **kwargs):
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=tokenizer.pad_token_id,
            **kwargs,
        )
        return list(out)

    return call


def _same(grouped: list, mixed: list, generative: bool, pad_id: int | None) -> bool:
    if generative:  # a group stops when its own rows are done: compare without the trailing padding
        return all(_trim(g, pad_id).tolist() == _trim(m, pad_id).tolist() for g, m in zip(grouped, mixed, strict=True))
    return all(
        torch.allclose(g, m, atol=1e-5) and int(g.argmax()) == int(m.argmax())
        for pair_g, pair_m in zip(grouped, mixed, strict=True)
        for g, m in zip(pair_g, pair_m, strict=True)
    )


def _trim(ids: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    end = len(ids)
    while end > 0 and pad_id is not None and int(ids[end - 1]) == pad_id:
        end -= 1
    return ids[:end]


if __name__ == "__main__":
    sys.exit(main())

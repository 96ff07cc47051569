"""Greedy answers of a GGUF export in llama.cpp vs loraqa's, for the offline SmolLM2 (or an adapter on it).

    python bench/gguf_agreement.py --questions 200                      # the base, zero-shot
    python bench/gguf_agreement.py --questions 200 --adapter runs/smollm2-135m-squad/adapter

Both decode greedily from the same prompt tokens (loraqa's), stopping where loraqa stops; the script
also checks that llama.cpp's tokenizer turns the prompt text into those tokens. The issue's bar: f16
agreement >= 95% of 200 dev questions; q8_0 is reported. Writes bench/results/gguf-agreement-<label>.json
(bench/record.py: commit, command, machine) with the counts and the first differing answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from llama_cpp import Llama
from record import stamped  # bench/record.py, next to this script

from loraqa.config.loader import load_config
from loraqa.data.prepare import load_test
from loraqa.device import plan_device
from loraqa.export.command import load_merged
from loraqa.export.gguf_model import write_gguf
from loraqa.formulations.generation import stop_token_ids
from loraqa.inference.evaluate import predict_settings
from loraqa.inference.ready import load_ready_model
from loraqa.models.loading import inspect_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--adapter")
    parser.add_argument("--label", default=None, help="results file name part (default: base or adapter)")
    args = parser.parse_args()
    label = args.label or ("adapter" if args.adapter else "base")
    config = load_config("smollm2-135m-squad", ["training.device=cpu", f"data.test_samples={args.questions}"])
    records, _ = load_test(config.data)
    if args.adapter:
        ready = load_merged(args.adapter, config)
    else:
        spec = inspect_base(config.model)
        ready = load_ready_model(
            config.model, plan_device("cpu", "fp32", spec.model_type), None, spec=spec, full_precision=True
        )
    settings = predict_settings(config, False)
    settings.with_loss = False
    ours = {
        p.id: p.text
        for p in ready.spec.formulation.predict(ready.model, ready.tokenizer, records, settings).predictions
    }
    stops = set(stop_token_ids(ready.tokenizer, True))
    kinds: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("f16", "q8_0"):
            write_gguf(ready, Path(tmp) / kind, kind)
            llm = Llama(str(Path(tmp) / kind / "model.gguf"), n_ctx=2048, verbose=False)
            same = same_tokens = 0
            differing = []
            for record in records:
                ids = ready.spec.formulation.prompt_ids(record, ready.tokenizer, reserve=settings.max_new_tokens)
                text = ready.tokenizer.decode(ids, skip_special_tokens=False)
                same_tokens += llm.tokenize(text.encode(), add_bos=False, special=True) == ids
                llm.reset()
                new: list[int] = []
                for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
                    if token in stops or len(new) >= settings.max_new_tokens:
                        break
                    new.append(token)
                theirs = ready.tokenizer.decode(new, skip_special_tokens=True).strip().split("\n", 1)[0].strip()
                same += theirs == ours[record.id]
                if theirs != ours[record.id]:
                    differing.append({"id": record.id, "loraqa": ours[record.id], "llama_cpp": theirs})
            kinds[kind] = {
                "equal_answers": same,
                "questions": len(records),
                "agreement_percent": round(100 * same / len(records), 1),
                "equal_prompt_tokens": same_tokens,
                "first_differences": differing[:20],
            }
            print(
                f"{kind}: {same}/{len(records)} answers equal loraqa's ({100 * same / len(records):.1f}%); "
                f"prompt tokens equal {same_tokens}/{len(records)}"
            )

    result = {"adapter": args.adapter, "questions": len(records), "bar": "f16 agreement >= 95%", "kinds": kinds}
    out = Path(__file__).resolve().parent / "results" / f"gguf-agreement-{label}.json"
    out.write_text(json.dumps(stamped(result, sys.argv), indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}")


if __name__ == "__main__":
    main()

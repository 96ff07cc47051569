"""bench/speed.py's report: model FLOPs utilisation and the printed tables."""

from __future__ import annotations

UPPER = "loraqa_upper_half"  # the --upper-half run's key in a model's results


def add_mfu(report: dict, peak: float) -> None:
    """Model FLOPs utilisation: useful training FLOP/s over the fp32 matmul peak."""
    rows = [row[v]["train"] for row in report.get("models", {}).values() for v in ("baseline", "loraqa")]
    rows += report.get("growth", {}).get("by_size", []) + report.get("growth", {}).get("by_length", [])
    for row in rows:
        row["mfu"] = round(row["useful_gflop_per_s"] / peak, 4)
    for row in report.get("models", {}).values():
        if UPPER in row:  # FlopModel counts a full backward, which this variant skips: no honest MFU
            row[UPPER]["train"]["mfu"] = None


def table(results: dict) -> str:
    head = (
        f"{'model':<13} {'variant':<8} {'train ex/s':>10} {'real tok/s':>10} {'pad':>5} {'MFU':>6} "
        f"{'peak RSS':>9} {'F1':>6} {'EM':>6} {'eval q/s':>9}"
    )
    lines = [head, "-" * len(head)]
    for key, row in results.items():
        for name in ("baseline", "loraqa", UPPER):
            if name not in row:
                continue
            v = row[name]
            t, e = v["train"], v["eval"]
            label = {"baseline": "seeds", "loraqa": "loraqa", UPPER: "upper1/2"}[name]
            lines.append(
                f"{key:<13} {label:<8} {t['examples_per_s']:>10.3f} {t['tokens_per_s']:>10.1f} "
                f"{100 * t['padding_share']:>4.0f}% {_percent(t['mfu'])} {v['rss_peak_mib_kernel']:>5} MiB "
                f"{e['f1']:>6.1f} {e['exact_match']:>6.1f} {e['questions_per_s']:>9.3f}"
            )
        s = row["speedup"]
        lines.append(
            f"{'':<13} {'ratio':<8} {s['train_examples_per_s']:>9.2f}x {s['train_tokens_per_s']:>9.2f}x "
            f"{'':>5} {'':>6} "
            f"{s['peak_rss']:>8.2f}x {'':>6} {'':>6} {s['eval_questions_per_s']:>8.2f}x"
        )
        t = row["loraqa"]["train"]
        if row["loraqa"].get("shared_prompt_starts"):
            lines.append(
                f"{'':<13} loraqa ran shared prompt starts once: {t['computed_tokens']:,} of {t['real_tokens']:,} "
                f"example tokens computed ({t['computed_tokens'] / t['seconds']:.1f} tok/s; MFU counts these)"
            )
        b1 = row["loraqa"].get("batch1")
        if b1:
            lines.append(
                f"{'':<13} loraqa batched vs batch-1 on the same merged model: {b1['identical']}/{b1['questions']} "
                f"answers identical, batch-1 {b1['questions_per_s']:.3f} q/s "
                f"(batched {s['batched_vs_batch1_questions_per_s']:.2f}x)"
            )
        u = row.get("upper_half_vs_loraqa")
        if u:
            lines.append(
                f"{'':<13} LoRA on the upper half: real tok/s {u['train_tokens_per_s']:.2f}x loraqa "
                f"({u['train_tokens_per_s_vs_seeds']:.2f}x seeds), F1 {u['f1_delta']:+.1f} vs loraqa "
                f"({u['f1_delta_vs_seeds']:+.1f} vs seeds)"
            )
    return "\n".join(lines)


def growth_table(g: dict) -> str:
    lines = [f"{'questions':>9} {'windows':>8} {'seconds':>8} {'ex/s':>7} {'tok/s':>7} {'MFU':>6}"]
    for r in g["by_size"]:
        lines.append(
            f"{r['questions']:>9} {r['features']:>8} {r['seconds']:>8.1f} {r['examples_per_s']:>7.2f} "
            f"{r['tokens_per_s']:>7.0f} {100 * r['mfu']:>5.1f}%"
        )
    lines.append(
        f"time ratio vs linear: {g['size_time_ratio_vs_linear']} (1.0 = linear); "
        f"seconds/example spread {g['seconds_per_example_spread']}"
    )
    lines.append(f"{'length':>9} {'windows':>8} {'seconds':>8} {'ex/s':>7} {'tok/s':>7} {'MFU':>6}")
    for r in g["by_length"]:
        lines.append(
            f"{r['length']:>9} {r['features']:>8} {r['seconds']:>8.1f} {r['examples_per_s']:>7.2f} "
            f"{r['tokens_per_s']:>7.0f} {100 * r['mfu']:>5.1f}%"
        )
    lines.append(
        f"time per window ~ length^{g['length_exponent']}; tok/s longest/shortest "
        f"{g['tokens_per_s_longest_vs_shortest']}"
    )
    return "\n".join(lines)


def _percent(share: float | None) -> str:
    return f"{'n/a':>6}" if share is None else f"{100 * share:>5.1f}%"

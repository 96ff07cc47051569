"""ROUGE-1, ROUGE-2 and ROUGE-L for generated answers, computed by the `rouge_score` package.

ROUGE is delegated to Google's `rouge_score` (no stemming, its default tokenizer) so numbers match
what `evaluate`/`datasets` report for the same setting. That tokenizer lowercases and keeps only
ASCII letters and digits, so non-English answers lose characters ("café" -> "caf"); SQuAD EM/F1
remain the primary QA measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    # Built once: evaluation calls rouge_scores after every eval step.
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)


def rouge_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """Mean ROUGE F-measures on the 0-100 scale: `rouge1`, `rouge2`, `rougeL`.

    `references[i]` holds the gold answers of `predictions[i]`. Each prediction gets, per ROUGE
    type, the best F-measure over its references (`RougeScorer.score_multi`); the result is
    100 * mean over predictions. No predictions at all give 0.0 for every type.

    A question whose references are all empty or blank (a SQuAD v2 no-answer question) follows the
    SQuAD v2 rule EM and F1 use: an empty (blank) prediction scores 1 for every type, anything else 0.

    Raises ValueError when the two sequences differ in length, TypeError when a reference entry is
    a bare str (its characters would be taken as separate references).
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} reference lists; they must pair up one to one"
        )
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for i, (prediction, refs) in enumerate(zip(predictions, references, strict=True)):
        if isinstance(refs, str):
            raise TypeError(f"references[{i}] must be a sequence of strings, not a str: {refs!r}")
        if not any(ref.strip() for ref in refs):  # no-answer: right only when nothing was answered
            for rouge_type in ROUGE_TYPES:
                totals[rouge_type] += float(not prediction.strip())
            continue
        best = _scorer().score_multi(list(refs), prediction)
        for rouge_type in ROUGE_TYPES:
            totals[rouge_type] += best[rouge_type].fmeasure
    n = len(predictions)
    return {t: 100.0 * totals[t] / n if n else 0.0 for t in ROUGE_TYPES}

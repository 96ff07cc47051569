"""Evaluation metrics as pure functions: SQuAD EM/F1, ROUGE, token accuracy, failure categories."""

from loraqa.metrics.failures import FAILURE_CATEGORIES, failure_category
from loraqa.metrics.rouge import rouge_scores
from loraqa.metrics.squad import exact_match, f1, normalize_answer, squad_scores
from loraqa.metrics.token_accuracy import decode_safe, token_accuracy

__all__ = [
    "FAILURE_CATEGORIES",
    "decode_safe",
    "exact_match",
    "f1",
    "failure_category",
    "normalize_answer",
    "rouge_scores",
    "squad_scores",
    "token_accuracy",
]

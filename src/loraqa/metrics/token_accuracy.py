"""Token accuracy under teacher forcing, and safe decoding of label ids.

Caveat: token accuracy is measured with the gold prefix fed in (teacher forcing), so it is inflated
by frequent, easy tokens (punctuation, EOS, the answer's continuation once its first token is
given) and says little about whether the generated answer is right. A seed run reported 0.93 token
accuracy while its generated answers were wrong. Use it as a training-health signal only; exact
match and F1 on generated answers (`loraqa.metrics.squad`) are the real measure.
"""

from __future__ import annotations

import numpy as np


def token_accuracy(predicted_ids, label_ids, ignore_index: int = -100) -> float:
    """Fraction of non-ignored label positions whose predicted id equals the label.

    accuracy = #{i : labels[i] != ignore_index and pred[i] == labels[i]}
             / #{i : labels[i] != ignore_index}

    `predicted_ids` is either ids with the shape of `label_ids`, or logits with one extra trailing
    (vocabulary) axis, which are argmaxed. Arrays or rectangular nested lists are accepted.
    Positions must already be aligned: for causal LMs, whose logits at t predict the token at t+1,
    pass `logits[:, :-1]` with `labels[:, 1:]`.

    Returns 0.0, not NaN, when no position is counted (all labels ignored, or empty input), so the
    value can be logged and averaged without special cases.
    """
    labels = np.asarray(label_ids)
    predicted = np.asarray(predicted_ids)
    if predicted.ndim == labels.ndim + 1:
        predicted = predicted.argmax(axis=-1)
    if predicted.shape != labels.shape:
        raise ValueError(
            f"predicted_ids shape {predicted.shape} does not match label_ids shape {labels.shape} "
            "(or label shape plus a vocabulary axis)"
        )
    counted = labels != ignore_index
    n = int(counted.sum())
    if n == 0:
        return 0.0
    return float((predicted[counted] == labels[counted]).sum()) / n


def decode_safe(label_ids, pad_token_id: int, ignore_index: int = -100) -> np.ndarray:
    """`label_ids` as an int64 array with `ignore_index` (-100) replaced by `pad_token_id`.

    Tokenizers cannot decode -100 (the fast tokenizers raise OverflowError on negative ids), and
    HF collators put -100 on every position the loss ignores; decode the result with
    `skip_special_tokens=True` to drop the pads.
    """
    if pad_token_id is None:
        # Common with causal tokenizers that define no pad token; fail here, not inside decode.
        raise ValueError("pad_token_id is None; pass tokenizer.eos_token_id or set a pad token")
    labels = np.asarray(label_ids, dtype=np.int64)
    return np.where(labels == ignore_index, np.int64(pad_token_id), labels)

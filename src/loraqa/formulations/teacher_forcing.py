"""Teacher-forced scoring of gold answers: eval loss and token accuracy, shared by generative formulations."""

from __future__ import annotations

from collections.abc import Callable

import torch

from loraqa.formulations.base import batches_by_length, model_device

# (model, batch) -> (mean loss over answer tokens, number of answer tokens, number predicted right)
ScoreBatch = Callable[[object, dict[str, torch.Tensor]], tuple[torch.Tensor, int, int]]


@torch.no_grad()
def teacher_forced_metrics(model, features, collate, batch_size: int, score_batch: ScoreBatch) -> dict[str, float]:
    """Token-weighted eval_loss and token_accuracy (0-100) over all features.

    Token accuracy is argmax-vs-gold under teacher forcing: it flatters the model (frequent tokens,
    given the gold prefix) and is reported beside, never instead of, EM/F1 on generated answers.
    """
    device = model_device(model)
    total_loss, total_tokens, total_correct = 0.0, 0, 0
    was_training = model.training
    model.eval()
    for batch_index in batches_by_length([len(f["input_ids"]) for f in features], batch_size):
        collated = collate([features[i] for i in batch_index])
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collated.items()}
        loss, tokens, correct = score_batch(model, batch)
        total_loss += float(loss) * tokens
        total_tokens += tokens
        total_correct += correct
    model.train(was_training)
    return {
        "eval_loss": total_loss / max(total_tokens, 1),
        "token_accuracy": 100.0 * total_correct / max(total_tokens, 1),
    }


@torch.no_grad()
def sequence_logprobs(model, features, collate, batch_size: int, row_logprobs) -> list[float]:
    """Each feature's summed log probability of its target (`row_logprobs(model, batch)` per batch), in order."""
    device = model_device(model)
    out = [0.0] * len(features)
    was_training = model.training
    model.eval()
    for batch_index in batches_by_length([len(f["input_ids"]) for f in features], batch_size):
        collated = collate([features[i] for i in batch_index])
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collated.items()}
        for i, value in zip(batch_index, row_logprobs(model, batch).tolist(), strict=True):
            out[i] = value
    model.train(was_training)
    return out


def labelled_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log probability of the labelled tokens (-100: not a target), logits aligned to labels."""
    mask = labels != -100
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logprobs * mask).sum(dim=1)

"""loraqa: LoRA adapters for SQuAD-style question answering.

Public API (see loraqa.api): `load(...)` -> QA with `answer` / `answer_batch`, `train(...)`,
`evaluate(...)`. Heavy imports happen on first use, so `import loraqa` is fast.
"""

__version__ = "0.1.0"

from loraqa.api import QA, Answer, RunResult, evaluate, load, train  # noqa: E402

__all__ = ["QA", "Answer", "RunResult", "evaluate", "load", "train", "__version__"]

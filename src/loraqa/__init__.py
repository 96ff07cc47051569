"""loraqa: LoRA adapters for SQuAD-style question answering.

Public API (see loraqa.api): `load(...)` -> QA with `answer` / `answer_batch`, `train(...)`,
`evaluate(...)`. Heavy imports happen on first use, so `import loraqa` is fast.
"""

from loraqa.api import QA, Answer, RunResult, evaluate, load, train
from loraqa.version import __version__

__all__ = ["QA", "Answer", "RunResult", "evaluate", "load", "train", "__version__"]

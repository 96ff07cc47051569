"""loraqa: LoRA adapters for SQuAD-style question answering."""

__version__ = "0.1.0"

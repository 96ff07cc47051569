"""Leakage between splits: contexts and questions of the test (or validation) split seen in training.

A test question whose context, or the question itself, is also in the training data measures
memory, not reading. Two kinds are counted, each on normalised text (SQuAD's own normalisation:
lowercase, no punctuation or articles, one space between words):

* exact: the normalised texts are equal;
* near: not equal, but their word 5-gram sets overlap with an estimated Jaccard similarity of at
  least 0.8 (MinHash over the 5-grams with datasketch's LSH index, the standard tool for
  near-duplicate detection at scale: one pass over train, one query per held-out text).

Contexts are compared as distinct paragraphs (SQuAD asks several questions per paragraph);
questions one by one. SQuAD v1.1's own train and dev share no paragraph, so their report is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from datasketch import MinHash, MinHashLSH

from loraqa.data.records import QARecord
from loraqa.metrics.squad import normalize_answer

NGRAM = 5
NEAR_THRESHOLD = 0.8
PERMUTATIONS = 64  # MinHash size: Jaccard estimates within ~0.1, enough to tell 0.8 from unrelated texts
SEED = 1  # MinHash is seeded: the same splits always give the same counts


@dataclass(frozen=True)
class SplitLeakage:
    """How many of a held-out split's distinct contexts and its questions also occur in train."""

    split: str
    contexts: int
    exact_contexts: int
    near_contexts: int
    questions: int
    exact_questions: int
    near_questions: int

    @property
    def leaked(self) -> int:
        return self.exact_contexts + self.near_contexts + self.exact_questions + self.near_questions

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"{self.split}: {self.exact_contexts} of {self.contexts} contexts in train exactly and "
            f"{self.near_contexts} nearly (5-gram overlap >= {NEAR_THRESHOLD}); {self.exact_questions} of "
            f"{self.questions} questions exactly and {self.near_questions} nearly"
        )


def split_leakage(train: Sequence[QARecord], held_out: Sequence[QARecord], split: str) -> SplitLeakage:
    """Count `held_out`'s contexts and questions that occur in `train`, exactly or nearly."""
    exact_contexts, near_contexts, context_count = _overlap({r.context for r in train}, {r.context for r in held_out})
    _, near_questions, _ = _overlap({r.question for r in train}, {r.question for r in held_out})
    # Exact questions are counted one by one (two held-out records may ask the same thing); near ones by text.
    train_questions = {normalize_answer(r.question) for r in train}
    exact_questions = sum(normalize_answer(r.question) in train_questions for r in held_out)
    return SplitLeakage(
        split, context_count, exact_contexts, near_contexts, len(held_out), exact_questions, near_questions
    )


def _overlap(train_texts: set[str], held_out_texts: set[str]) -> tuple[int, int, int]:
    """(exact, near, distinct held-out texts) after normalisation."""
    train_normal = {normalize_answer(t) for t in train_texts}
    held_normal = {normalize_answer(t) for t in held_out_texts} - {""}
    exact = held_normal & train_normal
    candidates = held_normal - exact
    near = 0
    if candidates:
        index = MinHashLSH(threshold=NEAR_THRESHOLD, num_perm=PERMUTATIONS)
        train_shingles = [s for s in map(_shingles, train_normal - exact) if s]
        with index.insertion_session() as session:
            for number, sketch in enumerate(_minhashes(train_shingles)):
                session.insert(str(number), sketch)
        held_shingles = [s for s in map(_shingles, candidates) if s]
        near = sum(bool(index.query(sketch)) for sketch in _minhashes(held_shingles))
    return len(exact), near, len(held_normal)


def _shingles(text: str) -> set[str]:
    words = text.split()
    if len(words) < NGRAM:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def _minhashes(shingle_sets: list[set[str]]) -> list[MinHash]:
    # bulk shares one set of permutations between all sketches (building them per sketch dominated the time)
    return MinHash.bulk(
        [[s.encode("utf-8") for s in shingles] for shingles in shingle_sets], num_perm=PERMUTATIONS, seed=SEED
    )

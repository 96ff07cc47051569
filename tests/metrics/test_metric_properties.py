"""Properties that hold for every input, checked with hypothesis."""

from hypothesis import given, settings
from hypothesis import strategies as st

from loraqa.metrics import exact_match, f1, normalize_answer, rouge_scores, squad_scores

# Mostly words that collide (articles, punctuation, repeats), with some arbitrary text mixed in.
WORDS = st.sampled_from(["the", "a", "an", "Denver", "broncos", "cat", "50", ".", ",", "café", " "])
ANSWER = st.one_of(st.lists(WORDS, max_size=6).map(" ".join), st.text(max_size=20))
GOLDS = st.lists(ANSWER, max_size=4)


@given(ANSWER, GOLDS)
def test_scores_are_in_range(prediction, golds):
    assert exact_match(prediction, golds) in (0.0, 1.0)
    assert 0.0 <= f1(prediction, golds) <= 1.0


@given(ANSWER, GOLDS)
def test_exact_match_implies_full_f1(prediction, golds):
    if exact_match(prediction, golds) == 1.0:
        assert f1(prediction, golds) == 1.0


@given(ANSWER, GOLDS, st.randoms())
def test_gold_order_does_not_matter(prediction, golds, rng):
    shuffled = list(golds)
    rng.shuffle(shuffled)
    assert exact_match(prediction, shuffled) == exact_match(prediction, golds)
    assert f1(prediction, shuffled) == f1(prediction, golds)


@given(st.text(max_size=40))
def test_normalize_answer_is_idempotent(s):
    once = normalize_answer(s)
    assert normalize_answer(once) == once


@given(st.dictionaries(st.text(max_size=4), st.tuples(ANSWER, GOLDS), max_size=6))
def test_corpus_scores_are_percentages(cases):
    preds = {qid: p for qid, (p, _) in cases.items()}
    gold = {qid: g for qid, (_, g) in cases.items()}
    scores = squad_scores(preds, gold)
    for key, value in scores.items():
        if key.endswith(("exact_match", "f1")):
            assert 0.0 <= value <= 100.0


@settings(max_examples=50)
@given(st.lists(st.tuples(ANSWER, GOLDS), max_size=4))
def test_rouge_is_a_percentage(pairs):
    scores = rouge_scores([p for p, _ in pairs], [g for _, g in pairs])
    assert all(0.0 <= v <= 100.0 for v in scores.values())

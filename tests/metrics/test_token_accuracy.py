"""Token accuracy with ignored positions, and decode_safe."""

import numpy as np
import pytest

from loraqa.metrics import decode_safe, token_accuracy


def test_ignored_positions_are_not_counted():
    labels = [[-100, -100, 5, 6, 7], [-100, 8, 9, -100, -100]]
    predicted = [[1, 2, 5, 0, 7], [3, 8, 0, 4, 4]]
    # counted: 5 6 7 8 9 -> right: 5, 7, 8 -> 3 / 5
    assert token_accuracy(predicted, labels) == pytest.approx(0.6)


def test_logits_are_argmaxed():
    labels = np.array([[2, -100, 0]])
    logits = np.zeros((1, 3, 4))
    logits[0, 0, 2] = 1.0  # right
    logits[0, 1, 3] = 1.0  # ignored
    logits[0, 2, 1] = 1.0  # wrong
    assert token_accuracy(logits, labels) == pytest.approx(0.5)


def test_custom_ignore_index():
    assert token_accuracy([1, 0, 0], [1, 0, 2], ignore_index=0) == pytest.approx(0.5)


def test_nothing_counted_gives_zero_not_nan():
    assert token_accuracy([[1, 2]], [[-100, -100]]) == 0.0
    assert token_accuracy([], []) == 0.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        token_accuracy([[1, 2, 3]], [[1, 2]])


def test_decode_safe_replaces_ignore_index_with_pad():
    out = decode_safe([[-100, 5, 6], [7, -100, -100]], pad_token_id=0)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[0, 5, 6], [7, 0, 0]])


def test_decode_safe_leaves_input_untouched():
    labels = np.array([-100, 3])
    decode_safe(labels, pad_token_id=1)
    np.testing.assert_array_equal(labels, [-100, 3])


def test_decode_safe_without_pad_token_raises():
    with pytest.raises(ValueError, match="eos_token_id"):
        decode_safe([-100, 3], pad_token_id=None)

"""Evaluation metrics against hand-computed cases and a brute-force AUC; the Dice loss of eq. 9."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medinfer.errors import InputError
from medinfer.evaluation.metrics import auc, classification_metrics, confusion_matrix, group_mean, roc_curve
from medinfer.training.losses import DiceLoss, make_loss


def test_confusion_matrix_counts_true_by_predicted():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_confusion_matrix_refuses_out_of_range():
    with pytest.raises(InputError, match="class indices must be in 0..1"):
        confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)


def test_per_class_and_macro_by_hand():
    # true: A A A B B C; predicted: A A B B A A  (C is never predicted)
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 0, 0])
    probs = np.eye(3)[pred] * 0.7 + 0.1
    m = classification_metrics(y, probs, ("A", "B", "C"))
    a, b, c = (m["per_class"][k] for k in "ABC")
    assert a["precision"] == pytest.approx(2 / 4) and a["recall"] == pytest.approx(2 / 3)
    assert a["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert b["precision"] == pytest.approx(1 / 2) and b["recall"] == pytest.approx(1 / 2) and b["f1"] == 0.5
    assert c == {**c, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}  # never predicted: zero, no error
    assert a["accuracy_ovr"] == pytest.approx((2 + 1) / 6)  # eq. 12: TP + TN over all
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["macro"]["f1"] == pytest.approx((a["f1"] + 0.5 + 0) / 3)
    assert np.sum(m["confusion_matrix"]) == 6


def test_roc_with_ties_is_a_diagonal_step():
    # scores 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.3 (neg): the tie at 0.8 enters in one step.
    fpr, tpr, thr = roc_curve(np.array([1, 0, 1, 0], bool), np.array([0.9, 0.8, 0.8, 0.3]))
    assert fpr.tolist() == [0, 0, 0.5, 1] and tpr.tolist() == [0, 0.5, 1, 1]
    assert thr[0] == np.inf and thr[1:].tolist() == [0.9, 0.8, 0.3]
    # pairs (pos, neg): 0.9>0.8, 0.9>0.3, 0.8=0.8 (half), 0.8>0.3 → 3.5 / 4
    assert auc(fpr, tpr) == pytest.approx(0.875)


def _pairwise_auc(positive: np.ndarray, score: np.ndarray) -> float:
    p, n = score[positive], score[~positive]
    diff = p[:, None] - n[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


@pytest.mark.parametrize("levels", [2, 5, 1000])
@pytest.mark.parametrize("n", [7, 200])
def test_auc_equals_the_pairwise_probability(rng, levels, n):
    positive = rng.random(n) < 0.4
    positive[:2] = [True, False]
    score = rng.integers(0, levels, n) / levels  # few levels: many ties
    fpr, tpr, _ = roc_curve(positive, score)
    assert auc(fpr, tpr) == pytest.approx(_pairwise_auc(positive, score), abs=1e-12)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_perfect_and_reversed_scores():
    pos = np.array([1, 1, 0, 0], bool)
    assert auc(*roc_curve(pos, np.array([4.0, 3, 2, 1]))[:2]) == 1.0
    assert auc(*roc_curve(pos, np.array([1.0, 2, 3, 4]))[:2]) == 0.0


def test_class_without_positives_has_no_auc():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.6, 0.3, 0.1], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    m = classification_metrics(y, probs, ("a", "b", "c"))
    assert m["per_class"]["c"]["auc"] is None and "c" not in m["roc"]
    assert m["macro"]["auc"] == pytest.approx((m["per_class"]["a"]["auc"] + m["per_class"]["b"]["auc"]) / 2)
    with pytest.raises(InputError, match="needs positives and negatives"):
        roc_curve(np.zeros(3, bool), np.arange(3.0))


def test_metrics_refuse_mismatched_shapes():
    with pytest.raises(InputError, match=r"expected probabilities of shape \(2, 3\)"):
        classification_metrics(np.array([0, 1]), np.ones((2, 2)), ("a", "b", "c"))


def test_group_mean_is_the_series_score():
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    np.testing.assert_allclose(group_mean(probs, np.array([0, 0, 1]), 2), [[0.7, 0.3], [0.2, 0.8]])


def test_dice_loss_by_hand():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]]))
    target = torch.tensor([0, 2])
    # Σ p·g = 0.7 + 0.25; Σ p² = 0.49 + 0.04 + 0.01 + 0.0625 + 0.25 + 0.0625; Σ g² = 2
    expected = 1 - 2 * 0.95 / (0.915 + 2)
    assert float(DiceLoss()(logits, target)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["ce", "dice"])
def test_losses_fall_towards_zero_for_confident_right_answers(name):
    loss = make_loss(name)
    target = torch.tensor([0, 1, 2, 1])
    right = torch.nn.functional.one_hot(target, 3).float() * 20
    wrong = right.roll(1, dims=1)
    assert float(loss(right, target)) < 1e-3 < float(loss(wrong, target))
    logits = torch.zeros(4, 3, requires_grad=True)
    loss(logits, target).backward()
    assert logits.grad.abs().sum() > 0

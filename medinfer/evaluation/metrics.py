"""Classification metrics of the DDC-ResNet paper (shared/seeds/000, eq. 12–17) and the Res-Dense Net paper
(shared/seeds/003, macro F1), in numpy.

Per class, one-vs-rest: recall ``TP / (TP + FN)`` (eq. 13), precision ``TP / (TP + FP)`` (eq. 14), F1
``2TP / (2TP + FP + FN)`` (eq. 15) and the one-vs-rest accuracy ``(TP + TN) / N`` (eq. 12); a ratio whose
denominator is zero is 0 (a class never predicted has precision 0). ``accuracy`` is the overall fraction
of correct predictions; macro values are unweighted means over the classes.

ROC (eq. 16–17) per class one-vs-rest from the class's probability: thresholds at every distinct score,
tied scores entering together (one diagonal step, never an optimistic staircase), the curve starting at
(0, 0); AUC by trapezoids, so it equals the probability that a random positive outscores a random
negative, ties counting half. A class without positives or without negatives has no ROC: its AUC is
``None`` and the macro AUC averages the others.
"""

from __future__ import annotations

import numpy as np

from medinfer.errors import InputError


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """``C[i, j]``: samples of true class i predicted as j."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise InputError(f"confusion_matrix: labels and predictions must be equal-length vectors, got "
                         f"{y_true.shape} and {y_pred.shape}")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= k):
        raise InputError(f"confusion_matrix: class indices must be in 0..{k - 1}")
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def roc_curve(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of a binary problem; ``thresholds[i]`` is the score at or above which
    samples count as positive at point i (``inf`` for the first point, where none do)."""
    positive = np.asarray(positive, bool)
    score = np.asarray(score, np.float64)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputError(f"roc_curve: needs positives and negatives, got {n_pos} and {n_neg}")
    order = np.argsort(-score, kind="stable")
    s, p = score[order], positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(p)[last_of_tie]
    fp = np.cumsum(~p)[last_of_tie]
    return (np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, s[last_of_tie]])


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a curve by trapezoids."""
    fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray, class_names: tuple[str, ...]) -> dict:
    """Every metric of one set of predictions: ``y_true`` (N,) class indices, ``probabilities`` (N, K)."""
    probs = np.asarray(probabilities, np.float64)
    y_true = np.asarray(y_true, np.int64)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(y_true), k):
        raise InputError(f"classification_metrics: expected probabilities of shape ({len(y_true)}, {k}), "
                         f"got {probs.shape}")
    if len(y_true) == 0:
        raise InputError("classification_metrics: no samples")
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    n = int(cm.sum())
    per_class, curves = {}, {}
    for i, name in enumerate(class_names):
        tp = int(cm[i, i])
        fn, fp = int(cm[i].sum()) - tp, int(cm[:, i].sum()) - tp
        tn = n - tp - fn - fp
        positive = y_true == i
        if positive.all() or not positive.any():
            class_auc = None
        else:
            fpr, tpr, _ = roc_curve(positive, probs[:, i])
            class_auc = auc(fpr, tpr)
            curves[name] = (fpr, tpr)
        per_class[name] = {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
                           "f1": _ratio(2 * tp, 2 * tp + fp + fn), "accuracy_ovr": _ratio(tp + tn, n),
                           "auc": class_auc, "support": int(positive.sum())}
    aucs = [m["auc"] for m in per_class.values() if m["auc"] is not None]
    macro = {key: float(np.mean([m[key] for m in per_class.values()])) for key in ("precision", "recall", "f1")}
    macro["auc"] = float(np.mean(aucs)) if aucs else None
    return {"n": n, "accuracy": _ratio(np.trace(cm), n), "macro": macro, "per_class": per_class,
            "confusion_matrix": cm.tolist(), "roc": {c: {"fpr": f.tolist(), "tpr": t.tolist()}
                                                     for c, (f, t) in curves.items()}}


def group_mean(probabilities: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """The mean probability of each group's rows (the Res-Dense Net paper's series score from its slices)."""
    probs = np.asarray(probabilities, np.float64)
    sums = np.zeros((n_groups, probs.shape[1]))
    np.add.at(sums, group, probs)
    counts = np.bincount(group, minlength=n_groups)[:, None]
    return sums / np.maximum(counts, 1)

"""PNG figures: training curves, per-class ROC curves, the confusion matrix (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never opens a window
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Loss (train, validation) and validation accuracy / macro F1 per epoch; phase changes marked."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.plot(epochs, [h["train_accuracy"] for h in history], "o-", label="train accuracy")
    ax2.plot(epochs, [h["val_accuracy"] for h in history], "o-", label="validation accuracy")
    ax2.plot(epochs, [h["val_macro_f1"] for h in history], "s--", label="validation macro F1")
    if any("val_series_macro_f1" in h for h in history):
        ax2.plot(epochs, [h.get("val_series_macro_f1", np.nan) for h in history], "^--",
                 label="validation series macro F1")
    ax2.set(xlabel="epoch", ylim=(0, 1.02), title="accuracy / F1")
    for ax in (ax1, ax2):
        for a, b in zip(history, history[1:], strict=False):
            if a["phase"] != b["phase"]:
                ax.axvline((a["epoch"] + b["epoch"]) / 2, color="grey", ls=":", lw=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_roc(metrics: dict, path: str | Path, title: str = "") -> Path:
    """One-vs-rest ROC curve of each class with its AUC, and the chance diagonal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, curve in metrics["roc"].items():
        ax.plot(curve["fpr"], curve["tpr"], lw=1.5, label=f"{name} (AUC {metrics['per_class'][name]['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    macro = metrics["macro"]["auc"]
    ax.set(xlabel="false positive rate (eq. 17)", ylabel="true positive rate (eq. 16)", xlim=(0, 1), ylim=(0, 1.01),
           title=title or (f"ROC, macro AUC {macro:.3f}" if macro is not None else "ROC"))
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_confusion(metrics: dict, class_names: tuple[str, ...], path: str | Path, title: str = "") -> Path:
    """Counts, coloured by the fraction of each true class (row-normalised: the diagonal is recall)."""
    plt = _pyplot()
    cm = np.asarray(metrics["confusion_matrix"], np.float64)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.1 * k + 2.5, 1.1 * k + 2))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}\n{rows[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if rows[i, j] > 0.6 else "black")
    ax.set(xticks=range(k), yticks=range(k), xticklabels=class_names, yticklabels=class_names,
           xlabel="predicted", ylabel="true", title=title or f"accuracy {metrics['accuracy']:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)

"""The papers' evaluation figures as PNGs (matplotlib, headless), each written atomically.

Every function takes plain numpy arrays and a target path, writes one PNG and returns its path,
so the same plots serve the end-of-training callback, ``eval.py`` and run comparison.
Class colours follow the fixed class order, so "dead" has the same colour in every figure.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from sklearn.metrics import auc, roc_curve  # noqa: E402

from stainfree.utils.atomic import atomic_path  # noqa: E402

DPI = 120


def class_colors(n: int) -> list:
    """One fixed colour per class index (tab10, then tab20 for many classes)."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def roc_curves(probs: np.ndarray, target: np.ndarray, class_names: Sequence[str]) -> dict[str, tuple]:
    """ROC inputs for one run: binary -> p(class 1) vs rest; more classes -> one curve per class.

    Returns ``{label: (is_positive [N] bool, score [N])}``; classes absent from ``target`` are skipped
    (their ROC is undefined).
    """
    probs, target = np.asarray(probs), np.asarray(target)
    names = list(class_names)
    if len(names) == 2:
        return {f"{names[1]} vs {names[0]}": (target == 1, probs[:, 1])}
    out = {}
    for i, name in enumerate(names):
        positive = target == i
        if positive.any() and (~positive).any():
            out[f"{name} vs rest"] = (positive, probs[:, i])
    return out


def micro_roc_input(probs: np.ndarray, target: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One ROC for a multi-class run (micro-average: every (sample, class) pair is a decision)."""
    probs, target = np.asarray(probs), np.asarray(target)
    if n_classes == 2:
        return target == 1, probs[:, 1]
    onehot = np.eye(n_classes, dtype=bool)[target]
    return onehot.ravel(), probs.ravel()


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, title: str = "ROC") -> Path:
    """One or many ROC curves (``{label: (is_positive, score)}``), AUC in the legend, chance diagonal."""
    if not curves:
        raise ValueError("plot_roc needs at least one curve (both classes must be present in the test split)")
    fig, ax = plt.subplots(figsize=(5.5, 5.0))
    colors = plt.get_cmap("tab10")
    for i, (label, (positive, score)) in enumerate(curves.items()):
        fpr, tpr, _ = roc_curve(np.asarray(positive).astype(int), np.asarray(score))
        ax.plot(fpr, tpr, lw=2, color=colors(i % 10), label=f"{label} (AUC = {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate", title=title)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = "") -> Path:
    """Confusion matrix in the fixed class order: counts and row percentages (= per-class recall)."""
    cm = np.asarray(cm)
    n = len(class_names)
    row = cm.sum(axis=1, keepdims=True)
    pct = np.divide(cm, row, out=np.zeros_like(cm, dtype=float), where=row > 0) * 100
    size = max(4.0, 0.7 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of true class")
    fontsize = 10 if n <= 6 else 7
    for i in range(n):
        for j in range(n):
            ax.text(
                j, i, f"{cm[i, j]}\n{pct[i, j]:.1f}%", ha="center", va="center", fontsize=fontsize,
                color="white" if pct[i, j] > 60 else "black",
            )
    ax.set_xticks(range(n), class_names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="Predicted", ylabel="True", title=title or f"Confusion matrix (n = {int(cm.sum())})")
    return _save(fig, path)


def plot_pi_scatter(
    pi_mean: np.ndarray,
    p_live: np.ndarray,
    target: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    r: float | None = None,
    thresholds: Mapping[str, float] | None = None,
    p_value: float | None = None,
) -> Path:
    """Patch mean PI (x) against the classifier's p(live) (y), coloured by the true class."""
    pi_mean, p_live, target = np.asarray(pi_mean, float), np.asarray(p_live, float), np.asarray(target)
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    colors = class_colors(len(class_names))
    ok = np.isfinite(pi_mean)
    for i, name in enumerate(class_names):
        sel = ok & (target == i)
        if sel.any():
            ax.scatter(pi_mean[sel], p_live[sel], s=6, alpha=0.5, color=colors[i], label=f"true {name} ({sel.sum()})")
    styles = ["--", ":", "-."]
    for k, (label, value) in enumerate((thresholds or {}).items()):
        ax.axvline(value, color="black", ls=styles[k % len(styles)], lw=1, label=f"{label} = {value:.1f}")
    title = "Classifier score vs patch mean PI"
    if r is not None and np.isfinite(r):
        title += f"\nPearson r = {r:.3f}" + (f", p = {p_value:.2g}" if p_value is not None else "") + f", n = {ok.sum()}"
    ax.set(xlabel="patch mean PI (raw intensity)", ylabel="p(live)", ylim=(-0.03, 1.03), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8, markerscale=3)
    return _save(fig, path)


def plot_pi_histogram(
    pi_mean: np.ndarray,
    path: str | os.PathLike,
    thresholds: Mapping[str, float] | None = None,
    groups: np.ndarray | None = None,
    bins: int = 60,
    title: str = "Patch mean PI with label thresholds",
) -> Path:
    """Histogram of patch mean PI (one colour per dataset/group) with the live/dead thresholds."""
    pi_mean = np.asarray(pi_mean, float)
    ok = np.isfinite(pi_mean)
    if not ok.any():
        raise ValueError("no finite mean-PI values to plot; this dataset has no PI channel")
    groups = np.asarray(groups) if groups is not None else np.full(pi_mean.shape, "patches", dtype=object)
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    edges = np.histogram_bin_edges(pi_mean[ok], bins=bins)
    for i, g in enumerate(sorted({str(v) for v in groups[ok]})):
        sel = ok & (groups.astype(str) == g)
        ax.hist(pi_mean[sel], bins=edges, alpha=0.55, color=plt.get_cmap("tab10")(i % 10), label=f"{g} (n={sel.sum()})")
    styles = ["--", ":", "-.", "-"]
    for k, (label, value) in enumerate((thresholds or {}).items()):
        ax.axvline(value, color="black", ls=styles[k % len(styles)], lw=1.5, label=f"{label} = {value:.2f}")
    ax.set(xlabel="patch mean PI (raw intensity)", ylabel="patches", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_tsne(
    coords: np.ndarray, truth: np.ndarray, pred: np.ndarray, class_names: Sequence[str], path: str | os.PathLike,
    title: str = "t-SNE of penultimate features",
) -> Path:
    """Two panels of the same embedding: coloured by true class and by predicted class."""
    coords = np.asarray(coords)
    colors = class_colors(len(class_names))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    for ax, labels, which in ((axes[0], np.asarray(truth), "truth"), (axes[1], np.asarray(pred), "prediction")):
        for i, name in enumerate(class_names):
            sel = labels == i
            if sel.any():
                ax.scatter(coords[sel, 0], coords[sel, 1], s=8, alpha=0.7, color=colors[i], label=f"{name} ({sel.sum()})")
        ax.set(title=f"coloured by {which}", xticks=[], yticks=[])
        ax.legend(fontsize=8, markerscale=2, loc="best")
    fig.suptitle(f"{title} (n = {len(coords)})")
    return _save(fig, path)


def plot_tsne_thumbnails(
    coords: np.ndarray,
    images: np.ndarray,
    truth: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    thumb_frac: float = 0.035,
) -> Path:
    """Patch thumbnails drawn at their t-SNE positions, border coloured by the true class.

    ``images`` [N, H, W] uint8 (grey). Pass a few hundred at most: more only hides each other.
    """
    coords, images, truth = np.asarray(coords, float), np.asarray(images), np.asarray(truth)
    if images.ndim != 3 or len(images) != len(coords):
        raise ValueError(f"images must be [N, H, W] with N = {len(coords)}, got shape {images.shape}")
    colors = class_colors(len(class_names))
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = float(max(hi - lo)) or 1.0
    half = span * thumb_frac / 2
    fig, ax = plt.subplots(figsize=(10, 10))
    for (x, y), img, t in zip(coords, images, truth):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, extent=(x - half, x + half, y - half, y + half), zorder=2)
        ax.add_patch(Rectangle((x - half, y - half), 2 * half, 2 * half, fill=False, lw=1.5, edgecolor=colors[int(t)], zorder=3))
    ax.set(xlim=(lo[0] - 2 * half, hi[0] + 2 * half), ylim=(lo[1] - 2 * half, hi[1] + 2 * half), xticks=[], yticks=[])
    ax.set_aspect("equal")
    handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=colors[i], lw=2) for i in range(len(class_names))]
    ax.legend(handles, [f"true {n}" for n in class_names], loc="upper right", fontsize=9)
    ax.set_title(f"t-SNE with patch thumbnails (n = {len(coords)})")
    return _save(fig, path)


def plot_gradcam_panel(
    images: np.ndarray,
    maps: np.ndarray,
    titles: Sequence[str],
    path: str | os.PathLike,
    suptitle: str = "Grad-CAM",
    ncols: int = 4,
    positions: Sequence[tuple[int, int]] | None = None,
) -> Path:
    """Grid of (patch, Grad-CAM overlay) pairs; each pair titled with truth / prediction / probability.

    ``positions`` (row, column) per patch, e.g. one row per class; default fills rows of ``ncols``.
    """
    images, maps = np.asarray(images), np.asarray(maps)
    n = len(images)
    if n == 0:
        raise ValueError("plot_gradcam_panel needs at least one patch")
    if maps.shape != images.shape[:3]:
        raise ValueError(f"maps {maps.shape} must match images {images.shape[:3]}")
    if positions is None:
        ncols = max(1, min(ncols, n))
        positions = [divmod(k, ncols) for k in range(n)]
    elif len(positions) != n:
        raise ValueError(f"got {len(positions)} positions for {n} patches")
    nrows = max(r for r, _ in positions) + 1
    ncols = max(c for _, c in positions) + 1
    fig, axes = plt.subplots(nrows, 2 * ncols, figsize=(2.2 * 2 * ncols, 2.8 * nrows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(n):
        r, c = positions[k]
        a_img, a_cam = axes[r, 2 * c], axes[r, 2 * c + 1]
        a_img.imshow(images[k], cmap="gray", vmin=0, vmax=255)
        a_img.set_title(titles[k], fontsize=7)
        a_cam.imshow(images[k], cmap="gray", vmin=0, vmax=255)
        a_cam.imshow(maps[k], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        a_cam.set_title("Grad-CAM", fontsize=7)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (2.8 * nrows + 0.4)))  # keep row titles clear of the suptitle
    return _save(fig, path)


def plot_reliability(curves: Mapping[str, dict], path: str | os.PathLike, title: str = "Reliability") -> Path:
    """Reliability diagram: accuracy vs mean top-label confidence per bin, one curve per
    ``{label: stainfree.trust.calibration.reliability_bins(...)}`` (e.g. before / after temperature
    scaling), the perfect-calibration diagonal, and the share of samples per bin underneath."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple"]
    for i, (label, bins) in enumerate(curves.items()):
        used = np.asarray(bins["count"]) > 0
        conf, acc = np.asarray(bins["confidence"])[used], np.asarray(bins["accuracy"])[used]
        ax.plot(conf, acc, marker="o", lw=2, color=colors[i % len(colors)], label=label)
        edges = np.asarray(bins["edges"])
        share = np.asarray(bins["count"]) / max(1, int(np.sum(bins["count"])))
        offset = (i - (len(curves) - 1) / 2) * (edges[1] - edges[0]) / (len(curves) + 1)
        hist.bar((edges[:-1] + edges[1:]) / 2 + offset, share, width=(edges[1] - edges[0]) / (len(curves) + 1),
                 color=colors[i % len(colors)], alpha=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), ylabel="Accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    hist.set(xlabel="Confidence (top-class probability)", ylabel="Share of samples", ylim=(0, 1))
    hist.grid(alpha=0.3)
    return _save(fig, path)

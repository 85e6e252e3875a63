"""Interactive W&B panels from an evaluation report: ROC/PR curves, confusion matrix, predictions table.

The PNG figures show one run; these panels are W&B custom charts and tables logged under the same
keys by every run, so the dashboard overlays a sweep's curves in one panel and lets a user sort and
filter the test patches (misclassified and least confident first) with their thumbnails.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import precision_recall_curve, roc_curve

from stainfree.data.pixels import resize_square
from stainfree.evaluation.plots import roc_curves
from stainfree.utils.pylogger import get_logger

log = get_logger(__name__)

TABLE_ROWS = 500
THUMBNAIL_PX = 96
CURVE_POINTS = 500  # per curve: keeps the chart tables small whatever the test set size
GROUP_COLUMNS = ("frame_id", "image_id")
CURVE_SPEC = "wandb/area-under-curve/v0"  # W&B's built-in preset behind wandb.plot.roc_curve/pr_curve


def wandb_runs(loggers: Iterable[Any]) -> list[Any]:
    """The W&B runs behind a list of Lightning loggers."""
    from pytorch_lightning.loggers import WandbLogger

    return [lg.experiment for lg in loggers if isinstance(lg, WandbLogger)]


def positive_class(class_names: Sequence[str]) -> int:
    """Index of the class whose probability the table shows: 'dead' when present, else the last."""
    names = list(class_names)
    return names.index("dead") if "dead" in names else len(names) - 1


def checkpoint_temperature(metadata: Mapping[str, Any] | None) -> float | None:
    """The calibration temperature stored in the checkpoint's ``stainfree`` block, if any."""
    calibration = (metadata or {}).get("calibration") or {}
    temperature = calibration.get("temperature") if isinstance(calibration, Mapping) else None
    return float(temperature) if temperature is not None else None


def calibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities: softmax(log p / T) equals softmax(logits / T)."""
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def browsing_order(table: pd.DataFrame, class_names: Sequence[str]) -> np.ndarray:
    """Row positions: misclassified first (most confident errors first), then correct ones from the
    least confident up, so the first rows of a capped table are the ones worth looking at."""
    confidence = table[[f"p_{n}" for n in class_names]].to_numpy().max(axis=1)
    correct = table["correct"].to_numpy().astype(bool)
    key = np.where(correct, confidence, -confidence)
    return np.lexsort((key, correct))


def _thin(x: np.ndarray, y: np.ndarray, limit: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= limit:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, limit).round().astype(int))
    return x[keep], y[keep]


def curve_frame(table: pd.DataFrame, class_names: Sequence[str], kind: str) -> pd.DataFrame:
    """ROC (fpr, tpr) or PR (recall, precision) points per one-vs-rest curve of ``plots.roc_curves``
    (binary: the positive class only), the same curves as the report's roc.png."""
    probs = table[[f"p_{n}" for n in class_names]].to_numpy()
    rows = []
    for label, (positive, score) in roc_curves(probs, table["target"].to_numpy(), class_names).items():
        if kind == "roc":
            x, y, _ = roc_curve(np.asarray(positive).astype(int), score)
        else:
            y, x, _ = precision_recall_curve(np.asarray(positive).astype(int), score)
        x, y = _thin(np.asarray(x), np.asarray(y))
        rows.append(pd.DataFrame({"class": label, "x": x.round(4), "y": y.round(4)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["class", "x", "y"])


def _curve_chart(frame: pd.DataFrame, kind: str, title: str) -> Any:
    import wandb

    x_name, y_name = ("fpr", "tpr") if kind == "roc" else ("recall", "precision")
    data = wandb.Table(dataframe=frame.rename(columns={"x": x_name, "y": y_name}))
    axes = ("False positive rate", "True positive rate") if kind == "roc" else ("Recall", "Precision")
    return wandb.plot_table(
        CURVE_SPEC, data, fields={"x": x_name, "y": y_name, "class": "class"},
        string_fields={"title": title, "x-axis-title": axes[0], "y-axis-title": axes[1]},
    )


def predictions_table(
    table: pd.DataFrame,
    class_names: Sequence[str],
    fetch_images: Callable[[np.ndarray], torch.Tensor],
    temperature: float | None = None,
    max_rows: int = TABLE_ROWS,
) -> Any:
    """A ``wandb.Table`` of at most ``max_rows`` test patches in browsing order, with thumbnails."""
    import wandb

    rows = browsing_order(table, class_names)[: max(int(max_rows), 0)]
    picked = table.iloc[rows].reset_index(drop=True)
    pos = positive_class(class_names)
    p_name = f"p({class_names[pos]})"
    probs = picked[[f"p_{n}" for n in class_names]].to_numpy()
    group = next((c for c in GROUP_COLUMNS if c in picked), None)
    columns = ["image", "truth", "predicted", "correct", p_name, "confidence"]
    columns += [f"{p_name} calibrated"] if temperature is not None else []
    columns += [group] if group else []
    columns += ["index"]
    images = fetch_images(picked["index"].to_numpy()) if len(picked) else torch.empty(0)
    p_cal = calibrated(probs, temperature)[:, pos] if temperature is not None else None
    data = []
    for i, row in picked.iterrows():
        patch = images[i, 0].numpy()
        thumb = resize_square(patch, THUMBNAIL_PX) if patch.shape[-1] > THUMBNAIL_PX else patch
        values = [wandb.Image(thumb), row["truth"], row["predicted"], bool(row["correct"]),
                  float(probs[i, pos]), float(probs[i].max())]
        values += [float(p_cal[i])] if p_cal is not None else []
        values += [str(row[group])] if group else []
        values += [int(row["index"])]
        data.append(values)
    return wandb.Table(columns=columns, data=data)


def log_wandb_panels(
    loggers: Iterable[Any],
    stage: str,
    table: pd.DataFrame,
    class_names: Sequence[str],
    fetch_images: Callable[[np.ndarray], torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
    max_rows: int = TABLE_ROWS,
) -> list[str]:
    """Log ``<stage>/roc_curve``, ``<stage>/pr_curve``, ``<stage>/confusion_chart`` and
    ``<stage>/predictions`` to every W&B run among ``loggers``; returns the keys logged."""
    runs = wandb_runs(loggers)
    if not runs:
        return []
    names = list(class_names)
    temperature = checkpoint_temperature(metadata)
    keys: list[str] = []
    for run in runs:  # fresh objects per run: W&B tables can be logged only once
        panels = _panels(stage, table, names, fetch_images, temperature, max_rows)
        run.log(panels)
        keys = list(panels)
    log.info("W&B panels: %s", ", ".join(keys))
    return keys


def _panels(
    stage: str, table: pd.DataFrame, names: list[str], fetch_images: Callable[[np.ndarray], torch.Tensor],
    temperature: float | None, max_rows: int,
) -> dict[str, Any]:
    import wandb

    panels: dict[str, Any] = {}
    if table["target"].nunique() > 1:  # ROC and PR need both kinds of truth
        for kind, title in (("roc", "ROC"), ("pr", "Precision-recall")):
            panels[f"{stage}/{kind}_curve"] = _curve_chart(curve_frame(table, names, kind), kind, f"{title} ({stage})")
    panels[f"{stage}/confusion_chart"] = wandb.plot.confusion_matrix(
        y_true=table["target"].astype(int).tolist(), preds=table["pred"].astype(int).tolist(),
        class_names=names, title=f"Confusion matrix ({stage})",
    )
    if max_rows > 0:
        panels[f"{stage}/predictions"] = predictions_table(table, names, fetch_images, temperature, max_rows)
    return panels

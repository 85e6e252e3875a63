"""One evaluation report from a trained module + its DataModule: metrics, per-patch CSV and figures.

Shared by the end-of-training callback and ``eval.py`` so both write identical artefacts. The
predictions are those of the last test pass (``module.test_outputs``) when present, so the report's
numbers are the very ones the trainer logged as ``test/*``.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from stainfree.evaluation import plots
from stainfree.evaluation.calibration_report import calibrated_columns, calibration_section
from stainfree.evaluation.gradcam import find_gradcam_layer, gradcam
from stainfree.evaluation.metrics import compute_metrics, flat_metrics
from stainfree.evaluation.tsne import subsample_indices, tsne_embed
from stainfree.evaluation.wandb_panels import TABLE_ROWS, log_wandb_panels
from stainfree.utils.atomic import atomic_path, atomic_write_text, unique_path
from stainfree.utils.errors import UserError
from stainfree.utils.pylogger import get_logger

log = get_logger(__name__)

TSNE_MAX_POINTS = 2000
THUMBNAIL_MAX = 300
GRADCAM_PER_CLASS = 4
BATCH = 64


class ReportError(UserError):
    """The module's outputs and the DataModule's split table do not describe the same samples."""


# ----------------------------------------------------------------------------- predictions
def collect_predictions(module: torch.nn.Module, datamodule: Any, stage: str = "test") -> dict[str, torch.Tensor]:
    """``module.test_outputs`` when it holds a test pass, else run the stage's dataloader once."""
    cached = getattr(module, "test_outputs", None) or {}
    if stage == "test" and cached and len(cached.get("target", ())) > 0:
        return {k: torch.as_tensor(v).cpu() for k, v in cached.items()}
    loader = _dataloader(datamodule, stage)
    was_training = module.training
    module.eval()
    logits, target, index = [], [], []
    try:
        with torch.no_grad():
            for batch in loader:
                logits.append(module(batch["image"]).float().cpu())
                target.append(batch["target"].cpu())
                index.append(batch["index"].cpu())
    finally:
        module.train(was_training)
    if not logits:
        raise ReportError(f"the {stage} dataloader yielded no batches: the {stage} split is empty")
    all_logits = torch.cat(logits)
    out = dict(probs=all_logits.softmax(dim=1), logits=all_logits, target=torch.cat(target), index=torch.cat(index))
    order = torch.argsort(out["index"])
    return {k: v[order] for k, v in out.items()}


def _dataloader(datamodule: Any, stage: str) -> Iterable:
    getter = getattr(datamodule, f"{stage}_dataloader", None)
    if getter is None:
        raise ReportError(f"{type(datamodule).__name__} has no {stage}_dataloader(); use stage='test' or 'val'")
    return getter()


def prediction_table(
    outputs: Mapping[str, torch.Tensor], split_table: pd.DataFrame, class_names: list[str]
) -> pd.DataFrame:
    """Per-sample rows: the split table's metadata (frame/image id, position, PI...) + truth, prediction, probs."""
    probs = outputs["probs"].float().numpy()
    target = outputs["target"].long().numpy()
    index = outputs["index"].long().numpy()
    if probs.shape[1] != len(class_names):
        raise ReportError(f"the model outputs {probs.shape[1]} classes but the data has {len(class_names)}: {class_names}")
    if len(index) and (index.min() < 0 or index.max() >= len(split_table)):
        raise ReportError(
            f"prediction index {index.max()} is outside the split table ({len(split_table)} rows); "
            "the checkpoint was tested on different data: rebuild the data with the run's config"
        )
    rows = split_table.iloc[index].reset_index(drop=True)
    if "target" in rows and not np.array_equal(rows["target"].to_numpy().astype(np.int64), target):
        raise ReportError(
            "the split table's targets disagree with the batches' targets; the DataModule's "
            "split_table() is not in dataset order (see docs/ARCHITECTURE.md)"
        )
    table = pd.DataFrame({"index": index})
    for column in rows.columns:
        if column != "target":
            table[column] = rows[column].to_numpy()
    pred = probs.argmax(axis=1)
    table["truth"] = [class_names[t] for t in target]
    table["predicted"] = [class_names[p] for p in pred]
    table["target"] = target
    table["pred"] = pred
    table["correct"] = target == pred
    for i, name in enumerate(class_names):
        table[f"p_{name}"] = probs[:, i]
    return table


# ----------------------------------------------------------------------------- images and features
def fetch_images(datamodule: Any, stage: str, indices: np.ndarray) -> torch.Tensor:
    """uint8 [n, 1, H, W] images of the given split-table rows (random access, else one pass)."""
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        return torch.empty(0, 1, 1, 1, dtype=torch.uint8)
    loader = _dataloader(datamodule, stage)
    dataset = getattr(loader, "dataset", None)
    if dataset is not None and hasattr(dataset, "__getitem__"):
        try:
            samples = [dataset[int(i)] for i in indices]
            if all(int(s["index"]) == int(i) for s, i in zip(samples, indices)):
                return torch.stack([torch.as_tensor(s["image"]) for s in samples])
        except (IndexError, KeyError, TypeError):
            pass
    wanted = {int(i): k for k, i in enumerate(indices)}
    found: dict[int, torch.Tensor] = {}
    for batch in loader:
        for image, idx in zip(batch["image"], batch["index"].tolist()):
            if idx in wanted:
                found[idx] = image
        if len(found) == len(wanted):
            break
    missing = [i for i in wanted if i not in found]
    if missing:
        raise ReportError(f"the {stage} dataloader never yielded samples {missing[:5]}...; is it the same split?")
    return torch.stack([found[int(i)] for i in indices])


def compute_features(module: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    """Penultimate features via ``module.features`` in eval mode, in batches."""
    if not hasattr(module, "features"):
        raise ReportError(f"{type(module).__name__} has no features(); t-SNE needs penultimate-layer features")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            chunks = [module.features(images[i : i + BATCH]).float().flatten(1).cpu() for i in range(0, len(images), BATCH)]
    finally:
        module.train(was_training)
    return torch.cat(chunks).numpy()


def gradcam_selection(
    table: pd.DataFrame, class_names: list[str], per_class: int = GRADCAM_PER_CLASS
) -> dict[str, list[list[int]]]:
    """Row positions for the two Grad-CAM panels, one list per true class: the most confident
    correct patches ("confident") and the most confidently misclassified ones ("misclassified")."""
    probs = table[[f"p_{n}" for n in class_names]].to_numpy()
    conf = probs.max(axis=1)
    correct = table["correct"].to_numpy()
    confident, wrong = [], []
    for c in range(len(class_names)):
        of_class = (table["target"] == c).to_numpy()
        right, bad = np.flatnonzero(of_class & correct), np.flatnonzero(of_class & ~correct)
        confident.append(right[np.argsort(-conf[right], kind="stable")[:per_class]].tolist())
        wrong.append(bad[np.argsort(-conf[bad], kind="stable")[:per_class]].tolist())
    return {"confident": confident, "misclassified": wrong}


# ----------------------------------------------------------------------------- the report
def pi_thresholds(datamodule: Any) -> dict[str, float]:
    """Live/dead mean-PI thresholds the DataModule labelled with (for the PI figures), if any.

    Reads ``datamodule.pi_thresholds``, ``datamodule.thresholds`` (attribute or method; a mapping or
    an object with ``to_dict()``) or ``preprocess_config()["labels"]``, using
    ``live_below``/``dead_above`` when present.
    """
    for attr in ("pi_thresholds", "thresholds", "preprocess_config"):
        try:
            values = getattr(datamodule, attr, None)
            values = values() if callable(values) else values
        except Exception:  # noqa: BLE001 - not prepared yet: draw the figures without lines
            values = None
        if attr == "preprocess_config" and isinstance(values, Mapping):
            values = values.get("labels")  # JIMT-1: the labelling thresholds live here
        if hasattr(values, "to_dict"):
            values = values.to_dict()
        if not isinstance(values, Mapping):
            continue
        if "live_below" in values and "dead_above" in values:
            return {"live below": float(values["live_below"]), "dead above": float(values["dead_above"])}
        numeric = {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numeric:
            return numeric
    return {}


def pi_histogram_data(datamodule: Any, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Mean PI of every non-empty patch (labelled or between the thresholds) when the DataModule has a
    ``window_index()`` (the paper's histogram), else of the labelled test patches."""
    try:  # JIMT-1: every window, labelled or not
        index = datamodule.window_index() if hasattr(datamodule, "window_index") else None
    except Exception:  # noqa: BLE001 - no window index: fall back to the test split
        index = None
    if index is not None:
        if "pi_mean" in index:
            if "empty" in index:
                index = index[~index["empty"].astype(bool)]
            groups = index["dataset"].astype(str).to_numpy() if "dataset" in index else None
            return index["pi_mean"].to_numpy(dtype=float), groups, "all non-empty patches, all splits"
    groups = table["dataset"].astype(str).to_numpy() if "dataset" in table else None
    return table["pi_mean"].to_numpy(dtype=float), groups, "labelled test patches"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return value


def _free_dir(out_dir: Path) -> Path:
    """``out_dir`` if new or empty; else ``out_dir_1``... so an earlier report is never overwritten."""
    if out_dir.exists() and any(out_dir.iterdir()):
        out_dir = unique_path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _loggers(logger: Any) -> list:
    if logger is None or logger is False:
        return []
    return list(logger) if isinstance(logger, (list, tuple)) else [logger]


def write_report(
    module: torch.nn.Module,
    datamodule: Any,
    out_dir: str | os.PathLike,
    stage: str = "test",
    logger: Any = None,
    tsne_max_points: int = TSNE_MAX_POINTS,
    seed: int = 0,
    wandb_table_rows: int = TABLE_ROWS,
) -> dict[str, Any]:
    """Write metrics.json/.csv, predictions.csv and all PNGs for ``stage`` into ``out_dir``.

    Returns the metrics dict (with ``report_dir`` and ``files`` added). Images go to every logger
    that has ``log_image`` (W&B) under ``<stage>/<figure name>``; W&B runs also get the interactive
    panels of ``wandb_panels`` (predictions table capped at ``wandb_table_rows``).
    """
    start = time.time()
    out_dir = _free_dir(Path(out_dir))
    class_names = list(getattr(datamodule, "class_names", None) or getattr(module, "class_names"))
    outputs = collect_predictions(module, datamodule, stage)
    split_table = datamodule.split_table(stage)
    table = prediction_table(outputs, split_table, class_names)
    probs = table[[f"p_{n}" for n in class_names]].to_numpy()
    target = table["target"].to_numpy()
    pi = table["pi_mean"].to_numpy(dtype=float) if "pi_mean" in table else None
    use_pi = pi is not None and "live" in class_names and np.isfinite(pi).any()
    metrics = compute_metrics(probs, target, class_names, pi_mean=pi if use_pi else None)
    metrics["stage"] = stage
    backbone = getattr(getattr(module, "hparams", {}), "get", lambda *_: None)("backbone")
    if isinstance(backbone, Mapping):
        metrics["backbone"] = backbone.get("name")
    title = f"{metrics.get('backbone') or type(module).__name__} | {stage} n={metrics['n']}"
    figures: dict[str, Path] = {}
    # calibration (stainfree.trust): ECE before/after the checkpoint's temperature, reliability diagram,
    # calibrated probabilities p_cal_<class> next to the raw p_<class>
    metrics["calibration"], figures["reliability"] = calibration_section(module, outputs, out_dir / "reliability.png", title)
    table = table.assign(**calibrated_columns(module, outputs, class_names))

    files: dict[str, Path] = {}
    with atomic_path(out_dir / "predictions.csv") as tmp:
        table.to_csv(tmp, index=False)
    files["predictions"] = out_dir / "predictions.csv"
    with atomic_path(out_dir / "metrics.csv") as tmp:
        pd.DataFrame([flat_metrics(metrics)]).to_csv(tmp, index=False)
    files["metrics_csv"] = out_dir / "metrics.csv"

    figures["roc"] = plots.plot_roc(
        plots.roc_curves(probs, target, class_names),
        out_dir / "roc.png",
        title=f"ROC ({title})" + ("" if len(class_names) == 2 else f"\nmacro one-vs-rest AUC = {metrics['auroc']:.3f}"),
    ) if len(np.unique(target)) > 1 else None
    figures["confusion_matrix"] = plots.plot_confusion(
        np.array(metrics["confusion_matrix"]), class_names, out_dir / "confusion_matrix.png",
        title=f"Confusion matrix ({title})\nbalanced acc {metrics['bal_acc']:.3f} "
        f"[{metrics['bal_acc_ci']['lower']:.3f}, {metrics['bal_acc_ci']['upper']:.3f}]",
    )
    if use_pi:
        thresholds = pi_thresholds(datamodule)
        figures["pi_vs_score"] = plots.plot_pi_scatter(
            pi, probs[:, class_names.index("live")], target, class_names, out_dir / "pi_vs_score.png",
            r=metrics.get("pearson_r"), p_value=metrics.get("pearson_p"), thresholds=thresholds,
        )
        hist_pi, hist_groups, what = pi_histogram_data(datamodule, table)
        figures["pi_histogram"] = plots.plot_pi_histogram(
            hist_pi, out_dir / "pi_histogram.png", thresholds=thresholds, groups=hist_groups,
            title=f"Patch mean PI ({what}) with label thresholds",
        )
    figures.update(_feature_figures(module, datamodule, stage, table, class_names, out_dir, tsne_max_points, seed))
    figures.update(_gradcam_figures(module, datamodule, stage, table, class_names, out_dir))
    figures = {k: v for k, v in figures.items() if v is not None}
    files.update(figures)

    metrics["report_dir"] = str(out_dir)
    metrics["files"] = {k: str(v) for k, v in files.items()}
    metrics["files"]["metrics_json"] = str(out_dir / "metrics.json")
    atomic_write_text(out_dir / "metrics.json", json.dumps(_json_safe(metrics), indent=2) + "\n")
    _log_to_loggers(logger, stage, metrics, figures)
    log_wandb_panels(_loggers(logger), stage, table, class_names,
                     lambda rows: fetch_images(datamodule, stage, rows),
                     getattr(module, "run_metadata", None), wandb_table_rows)
    log.info(
        "%s report in %s (%.0f s): bal_acc %.4f [%.4f, %.4f], AUROC %.4f",
        stage, out_dir, time.time() - start, metrics["bal_acc"],
        metrics["bal_acc_ci"]["lower"], metrics["bal_acc_ci"]["upper"], metrics["auroc"],
    )
    return metrics


def _feature_figures(
    module: torch.nn.Module, datamodule: Any, stage: str, table: pd.DataFrame, class_names: list[str],
    out_dir: Path, max_points: int, seed: int,
) -> dict[str, Path | None]:
    """t-SNE scatter (truth | prediction) and the thumbnail map, on a seeded, class-stratified subsample."""
    if len(table) < 5:
        log.warning("t-SNE skipped: only %d %s samples (need 5)", len(table), stage)
        return {}
    rows = subsample_indices(len(table), max_points, seed=seed, strata=table["target"].to_numpy())
    images = fetch_images(datamodule, stage, table["index"].to_numpy()[rows])
    coords = tsne_embed(compute_features(module, images), seed=seed)
    truth, pred = table["target"].to_numpy()[rows], table["pred"].to_numpy()[rows]
    out = {
        "tsne": plots.plot_tsne(coords, truth, pred, class_names, out_dir / "tsne.png",
                                title=f"t-SNE of penultimate features ({stage})"),
    }
    thumbs = subsample_indices(len(rows), THUMBNAIL_MAX, seed=seed, strata=truth)
    out["tsne_thumbnails"] = plots.plot_tsne_thumbnails(
        coords[thumbs], images[thumbs, 0].numpy(), truth[thumbs], class_names, out_dir / "tsne_thumbnails.png"
    )
    return out


def _gradcam_figures(
    module: torch.nn.Module, datamodule: Any, stage: str, table: pd.DataFrame, class_names: list[str], out_dir: Path
) -> dict[str, Path | None]:
    """Grad-CAM (for the predicted class) on the most confident and the misclassified patches per class."""
    layer = find_gradcam_layer(module)
    out: dict[str, Path | None] = {}
    for kind, per_class in gradcam_selection(table, class_names).items():
        rows = [r for class_rows in per_class for r in class_rows]
        if not rows:
            log.info("Grad-CAM '%s' panel skipped: no such %s patches", kind, stage)
            continue
        # one grid row per true class that has patches of this kind
        positions = [(k, j) for k, class_rows in enumerate(filter(None, per_class)) for j in range(len(class_rows))]
        images = fetch_images(datamodule, stage, table["index"].to_numpy()[rows])
        maps = torch.cat([gradcam(module, images[i : i + 16], layer=layer)[0] for i in range(0, len(images), 16)])
        titles = []
        for r in rows:
            row = table.iloc[r]
            titles.append(f"true {row['truth']} / pred {row['predicted']}\np({row['predicted']})={row[f'p_{row.predicted}']:.3f}")
        out[f"gradcam_{kind}"] = plots.plot_gradcam_panel(
            images[:, 0].numpy(), maps.numpy(), titles, out_dir / f"gradcam_{kind}.png",
            suptitle=f"Grad-CAM: {kind} {stage} patches, one row per true class (map of the predicted class)",
            positions=positions,
        )
    return out


def _log_to_loggers(logger: Any, stage: str, metrics: dict[str, Any], figures: Mapping[str, Path]) -> None:
    """Figures as W&B images; the CI bounds and Pearson r as scalars (W&B/CSV loggers alike)."""
    scalars = {f"{stage}_report/{k}": v for k, v in flat_metrics(metrics).items() if isinstance(v, (int, float))}
    for lg in _loggers(logger):
        if hasattr(lg, "log_metrics"):
            lg.log_metrics({k: float(v) for k, v in scalars.items()})
        if hasattr(lg, "log_image"):
            for name, path in figures.items():
                lg.log_image(key=f"{stage}/{name}", images=[str(path)])

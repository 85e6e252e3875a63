"""The predict task: raw frames + a checkpoint -> per-patch, per-image and (with a plate map) per-well results.

A folder of raw frames is a user's real data, so one bad file must never cost the whole run:
each file's failure goes to failed.csv at once and the run goes on; it fails only when nothing
could be processed. Every finished image is logged to disk as it finishes, so a killed run loses
nothing and continues with ``resume=true`` (inference/results_log.py). Reading and tiling run in
DataLoader workers so the accelerator is not kept waiting on the CPU. ``main`` is what ``predict.py`` runs.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from stainfree.data.imageio import list_images
from stainfree.inference.predictor import (
    INTERNAL_COLUMNS,
    FrameDataset,
    PredictError,
    PredictSummary,
    autocast_dtype,
    dead_class_index,
    failure_reason,
    image_names,
    image_row,
    iter_frames,
    load_model,
    overlay_names,
    patch_table,
    resolve_device,
)
from stainfree.inference.results_log import ResultsLog, file_sha256
from stainfree.inference.tiling import Tiles, build_tiler
from stainfree.inference.trust_columns import ood_summary_line
from stainfree.inference.writers import write_csv, write_json
from stainfree.models.checkpoint import read_checkpoint_meta
from stainfree.utils import runtime
from stainfree.utils.atomic import unique_path
from stainfree.utils.cli import task_main


@dataclass
class _Model:
    """What classifying one frame needs: the model, where and how it runs, and the class layout."""

    net: torch.nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    batch_size: int
    class_names: list[str]
    dead: int
    trusted: Any  # inference.trust_columns.TrustedClassifier: calibrated p, raw logits, OOD columns
    counter: Any = None  # inference.cell_fraction.CellCounter for cell-trained checkpoints

    @property
    def prob_cols(self) -> list[str]:
        return [f"p({c})" for c in self.class_names]


def predict(
    ckpt_path: str | os.PathLike,
    input: str | os.PathLike,  # noqa: A002 - the user-facing option name
    output_dir: str | os.PathLike,
    plate_map: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int = 0,
    positive_class: str | None = None,
    overlays: bool = True,
    precision: str = "auto",
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = True,
    resume: bool = False,
    ood_exclude: bool = True,
    regions: str | os.PathLike | None = None,
    region_point_size: float | None = None,
    cell_fraction: str = "auto",
) -> PredictSummary:
    """Run the whole prediction; returns the summary (also written as summary.json).

    Each image's rows are appended to the folder's results log as soon as it is classified (see
    :mod:`~stainfree.inference.results_log`); ``resume=True`` continues the run already in
    ``output_dir``. Raises a :class:`~stainfree.utils.errors.UserError` (``CheckpointError``,
    :class:`PredictError`, ``PlateMapError``, ``ResumeError``) before any work when the
    checkpoint/input/plate map/folder is unusable, and after the loop when no image at all could be
    processed; one bad image only adds a row to failed.csv.
    """
    from tqdm.auto import tqdm

    from stainfree.inference.platemap import match_images, read_plate_map
    from stainfree.inference.results_log import ResultsLog

    if batch_size < 1:
        raise PredictError(f"batch_size={batch_size}: must be >= 1")
    started = time.perf_counter()
    out_dir = Path(output_dir)
    checkpoint = read_checkpoint_meta(ckpt_path)  # a missing or foreign checkpoint stops here
    root, paths, names = _inputs(input)
    plate = read_plate_map(plate_map) if plate_map else None  # fail before hours of inference
    if plate is not None:
        match_images(plate, names, plate_map)  # ambiguous or unmatched entries: refused now, not at the end
    cells_table = _read_regions(regions, root, checkpoint.preprocess, region_point_size)
    model, meta = _load(checkpoint, device, precision, batch_size, positive_class)
    tiler = build_tiler(meta["preprocess"])
    model.counter = _cell_counter(cell_fraction, checkpoint.config, tiler.spec, model.trusted, model.dead)
    summary = PredictSummary(output_dir=out_dir, n_images=len(paths))
    summary.warnings += model.trusted.notes()
    if meta.get("preprocess_rebuilt"):
        summary.warnings.append(f"{ckpt_path} has no stored preprocess settings; they were rebuilt from its data "
                                "config (retrain with the current train.py to store them)")
    identity = dict(checkpoint_sha256=file_sha256(checkpoint.path), input=str(root.resolve()),
                    class_names=model.class_names, dead_class=model.class_names[model.dead],
                    preprocess=meta["preprocess"], precision=str(model.amp_dtype), device=model.device.type,
                    overlays=overlays, cell_counting=model.counter is not None)  # what a resumed run must share
    with ResultsLog(out_dir, identity, resume) as log:
        todo = [i for i, name in enumerate(names) if name not in log.done]
        summary.n_resumed = len(paths) - len(todo)
        overlay_files = overlay_names(names) if overlays else {}
        loop_start = time.perf_counter()
        frames = iter_frames(FrameDataset([paths[i] for i in todo], [names[i] for i in todo], tiler), num_workers)
        with torch.inference_mode():
            for item in tqdm(frames, total=len(todo), desc="predict", unit="frame", disable=not progress):
                _predict_item(item, model, log, out_dir / "overlays", overlay_files, log.resumed, summary)
        summary.loop_seconds = time.perf_counter() - loop_start
        _write_results(log, names, summary, plate, plate_map, n_boot, seed, overlays, ood_exclude)
    if cells_table is not None and summary.n_ok:
        from stainfree.inference.regions import predict_cells

        cells = predict_cells(cells_table, tiler.spec, model.trusted, root)
        summary.files["cells"] = write_csv(out_dir / "cells.csv", cells)
    summary.seconds = time.perf_counter() - started
    summary.files["summary"] = write_json(out_dir / "summary.json",
                                           dict(summary.to_dict(), ckpt_path=str(ckpt_path), resumed=log.resumed,
                                                class_names=model.class_names,
                                                dead_class=model.class_names[model.dead], device=str(model.device),
                                                temperature=model.trusted.temperature,
                                                ood_reference=model.trusted.scorer is not None,
                                                ood_exclude=ood_exclude))
    if summary.n_ok == 0:
        raise PredictError(f"none of the {len(paths)} image(s) under {input} could be processed (see "
                           f"{summary.files.get('failed', 'failed.csv')}); first error: {summary.failures[0]['reason']}")
    return summary


def _inputs(input: str | os.PathLike) -> tuple[Path, list[Path], list[str]]:  # noqa: A002
    """The input root, its image files (sorted) and their names as the CSVs show them."""
    root = Path(input)
    if not root.exists():
        raise PredictError(f"input={input}: no such file or folder; pass a raw image or a folder of them")
    paths = list_images(root)
    if not paths:
        raise PredictError(f"input={input}: no PNG/JPG/TIFF images found (searched recursively)")
    return root, paths, image_names(root, paths)


def _load(checkpoint, device: str, precision: str, batch_size: int,
          positive_class: str | None) -> tuple[_Model, dict[str, Any]]:
    """The checkpoint's model on its device, and its predict metadata (classes, preprocess, trust blocks)."""
    from stainfree.inference.trust_columns import TrustedClassifier

    dev = resolve_device(device)
    net, meta = load_model(checkpoint, dev)
    amp_dtype = autocast_dtype(precision, dev)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    class_names = [str(c) for c in meta["class_names"]]
    trusted = TrustedClassifier(net, meta, dev, batch_size, amp_dtype)
    return _Model(net, dev, amp_dtype, batch_size, class_names, dead_class_index(class_names, positive_class),
                  trusted), meta


def _predict_item(item: dict[str, Any], model: _Model, log: ResultsLog, overlay_dir: Path,
                  overlay_files: dict[str, str], replace_overlays: bool, summary: PredictSummary) -> None:
    """Classify one read frame and log it at once; any failure of this one image goes to failed.csv."""
    name = item["name"]
    if item["error"] is not None:
        log.append_failure(name, item["error"])
        return
    tiles: Tiles = item["tiles"]
    try:
        result = model.trusted(tiles)  # calibrated probs, raw logits, OOD columns (one backbone pass)
        probs = result.probs
        table = patch_table(name, tiles, probs, model.class_names, model.prob_cols).assign(**result.patch_columns)
        row = {**image_row(name, tiles, probs, model.dead), **result.image_columns}
        if model.counter is not None:  # a cell-trained model: count cells, not windows
            row = _with_cells(row, model.counter(tiles))
    except Exception as exc:  # noqa: BLE001 - one image's failure is recorded, the run goes on
        log.append_failure(name, failure_reason(Path(name), exc))
        return
    if overlay_files:
        try:
            _save_overlay(overlay_dir / overlay_files[name], tiles, probs, row, model, replace_overlays)
        except Exception as exc:  # noqa: BLE001 - the numbers stand without their picture
            summary.warnings.append(f"{name}: overlay not drawn ({' '.join(str(exc).split())})")
    log.append_image(row, table)  # after the overlay: a logged image is complete


def _save_overlay(file: Path, tiles: Tiles, probs: np.ndarray, row: dict[str, Any], model: _Model,
                  replace: bool) -> None:
    """overlays/<image>_heatmap.png; a resumed run replaces the one a kill left for an unlogged image."""
    from stainfree.inference.overlay import add_legend, heatmap_overlay, mark_ood, save_overlay

    dead = model.class_names[model.dead]
    overlay = heatmap_overlay(tiles.frame8, tiles.boxes, probs[:, model.dead], tiles.empty)
    caption = (f"{row['image']}: {row['n_dead']}/{row['n_patches'] - row['n_empty']} patches {dead} "
               f"({row['n_empty']} empty)")
    if row.get("ood_flag"):
        overlay = mark_ood(overlay)
        caption += " - OOD, see images.csv"
    save_overlay(file if replace else unique_path(file), add_legend(overlay, caption, dead_label=dead))


def _write_results(log: ResultsLog, names: list[str], summary: PredictSummary, plate: pd.DataFrame | None,
                   plate_map: str | os.PathLike | None, n_boot: int, seed: int, overlays: bool,
                   ood_exclude: bool) -> None:
    """The final tables, from the complete log (so a resumed run writes what an uninterrupted one would)."""
    images, patches, failed = log.tables()
    failed = failed[failed["image"].isin(names)]
    out_dir = log.out_dir
    if images is not None and not images["image"].isin(names).all():  # removed from input since the killed run
        gone = sorted(set(images["image"]) - set(names))
        summary.warnings.append(f"{len(gone)} logged image(s) are no longer in the input and were left out: {gone[:5]}")
        images = images[images["image"].isin(names)].reset_index(drop=True)
        patches = patches[patches["image"].isin(names)].reset_index(drop=True)
        images = images if len(images) else None
    summary.failures = failed.to_dict("records")
    failed_file = log.write_failures(failed)
    if failed_file:
        summary.files["failed"] = failed_file
    if images is None:
        return
    summary.n_ok, summary.n_patches = len(images), len(patches) if patches is not None else 0
    summary.files["patches"] = write_csv(out_dir / "patches.csv", patches)
    summary.files["images"] = write_csv(out_dir / "images.csv", images.drop(columns=list(INTERNAL_COLUMNS)))
    if overlays:
        summary.files["overlays"] = str(out_dir / "overlays")
    summary.ood_line = ood_summary_line(images) or ""
    if plate is not None:
        from stainfree.inference.plate_report import plate_report

        summary.files.update(plate_report(plate, images, out_dir, plate_map, summary.warnings,
                                          n_boot=n_boot, seed=seed, exclude_ood=ood_exclude))


def _cell_counter(mode: str, config: dict, spec: Any, trusted: Any, dead: int) -> Any:
    """The per-image cell counter (inference/cell_fraction) when ``cell_fraction`` asks for it:
    ``auto`` = the checkpoint was trained on single cells (VOC/COCO/points boxes)."""
    from stainfree.inference.cell_fraction import CellCounter, trained_on_cells

    mode = str(mode).lower()
    if mode not in ("auto", "true", "false"):
        raise PredictError(f"cell_fraction={mode}: use auto, true or false")
    on_cells = trained_on_cells(config, spec)
    if mode == "true" and spec.source_scale is None:
        raise PredictError("cell_fraction=true needs a checkpoint that records its training cell scale "
                           "(source_scale); this one does not")
    return CellCounter(spec, trusted, dead) if mode == "true" or (mode == "auto" and on_cells) else None


def _with_cells(row: dict[str, Any], cells: dict[str, Any]) -> dict[str, Any]:
    """The image row with the cell counts; the window-based fraction stays as window_dead_fraction."""
    out = dict(row, window_dead_fraction=row["dead_fraction"])
    out.update(cells)
    return out


def _read_regions(regions: str | os.PathLike | None, root: Path, preprocess: dict | None,
                  point_size: float | None) -> pd.DataFrame | None:
    """The ``regions=`` annotation as a sample table (None without one); read before any inference."""
    if not regions:
        return None
    from stainfree.data.spec import PreprocessSpec
    from stainfree.inference.regions import read_regions

    if not preprocess:
        raise PredictError(f"regions={regions}: the checkpoint stores no preprocess settings, so its cell cut is "
                           "unknown; retrain with the current train.py")
    return read_regions(regions, root, PreprocessSpec.from_dict(preprocess), point_size)


@task_main("predict")
def main(cfg: DictConfig) -> None:
    """``python predict.py ckpt_path=... input=...``: see conf/predict.yaml for every option."""
    chosen = runtime.configure(cfg.get("runtime"), resolve_device(str(cfg.device)).type,
                               data_workers=cfg.get("num_workers"))
    summary = predict(
        ckpt_path=cfg.ckpt_path,
        input=cfg.input,
        output_dir=_output_dir(cfg),
        plate_map=cfg.get("plate_map"),
        batch_size=int(cfg.batch_size),
        device=str(cfg.device),
        num_workers=chosen.workers,
        positive_class=cfg.get("positive_class"),
        overlays=bool(cfg.overlays),
        precision=str(cfg.precision),
        n_boot=int(cfg.n_boot),
        seed=int(cfg.seed),
        progress=bool(cfg.progress),
        resume=bool(cfg.get("resume", False)),
        ood_exclude=bool(cfg.get("ood_exclude", True)),
        regions=cfg.get("regions"),
        region_point_size=cfg.get("region_point_size"),
        cell_fraction=str(cfg.get("cell_fraction", "auto")),
    )
    print(summary.report())


def _output_dir(cfg: DictConfig) -> str:
    """``output_dir=`` when given (the folder to continue with ``resume=true``), else this run's folder."""
    if cfg.get("output_dir"):
        return str(cfg.output_dir)
    if cfg.get("resume"):
        raise PredictError("resume=true needs output_dir=<the folder of the run to continue> "
                           "(e.g. logs/predict/runs/<time>)")
    return str(cfg.paths.output_dir)

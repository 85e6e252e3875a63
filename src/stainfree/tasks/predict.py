"""The predict task: raw frames + a checkpoint -> per-patch, per-image and (with a plate map) per-well results.

A folder of raw frames is a user's real data, so one bad file must never cost the whole run:
each file's failure is recorded and reported at the end, and the run fails only when nothing
could be processed. Reading and tiling run in DataLoader workers so the accelerator is not kept
waiting on the CPU. ``main`` is what ``predict.py`` runs.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig

from stainfree.data.imageio import list_images
from stainfree.inference.predictor import (
    FrameDataset,
    PredictError,
    PredictSummary,
    autocast_dtype,
    dead_class_index,
    flat_name,
    image_names,
    image_row,
    iter_frames,
    load_model,
    patch_table,
    resolve_device,
)
from stainfree.inference.tiling import Tiles, build_tiler
from stainfree.inference.writers import write_csv, write_json
from stainfree.models.checkpoint import read_checkpoint_meta
from stainfree.utils import runtime
from stainfree.utils.atomic import unique_path
from stainfree.utils.cli import task_main


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
    ood_exclude: bool = True,
    regions: str | os.PathLike | None = None,
    region_point_size: float | None = None,
    cell_fraction: str = "auto",
) -> PredictSummary:
    """Run the whole prediction; returns the summary (also written as summary.json).

    Raises a :class:`~stainfree.utils.errors.UserError` (``CheckpointError``, :class:`PredictError`,
    ``PlateMapError``) before any work when the checkpoint/input/plate map is unusable,
    and after the loop when no image at all could be processed.
    """
    from tqdm.auto import tqdm

    from stainfree.inference.overlay import add_legend, heatmap_overlay, mark_ood, save_overlay
    from stainfree.inference.platemap import read_plate_map
    from stainfree.inference.trust_columns import TrustedClassifier, ood_summary_line

    if batch_size < 1:
        raise PredictError(f"batch_size={batch_size}: must be >= 1")
    started = time.perf_counter()
    out_dir = Path(output_dir)
    checkpoint = read_checkpoint_meta(ckpt_path)  # a missing or foreign checkpoint stops here
    root = Path(input)
    if not root.exists():
        raise PredictError(f"input={input}: no such file or folder; pass a raw image or a folder of them")
    paths = list_images(root)
    if not paths:
        raise PredictError(f"input={input}: no PNG/JPG/TIFF images found (searched recursively)")
    plate = read_plate_map(plate_map) if plate_map else None  # fail before hours of inference
    cells_table = _read_regions(regions, root, checkpoint.preprocess, region_point_size)
    dev = resolve_device(device)
    model, meta = load_model(checkpoint, dev)
    amp_dtype = autocast_dtype(precision, dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    class_names = [str(c) for c in meta["class_names"]]
    dead = dead_class_index(class_names, positive_class)
    tiler = build_tiler(meta["preprocess"])
    names = image_names(root, paths)
    summary = PredictSummary(output_dir=out_dir, n_images=len(paths))
    trusted = TrustedClassifier(model, meta, dev, batch_size, amp_dtype)
    counter = _cell_counter(cell_fraction, checkpoint.config, tiler.spec, trusted, dead)
    summary.warnings += trusted.notes()
    if meta.get("preprocess_rebuilt"):
        summary.warnings.append(f"{ckpt_path} has no stored preprocess settings; they were rebuilt from its data "
                                "config (retrain with the current train.py to store them)")
    out_dir.mkdir(parents=True, exist_ok=True)
    overlay_dir = out_dir / "overlays"
    patch_rows: list[pd.DataFrame] = []
    image_rows: list[dict[str, Any]] = []
    prob_cols = [f"p({c})" for c in class_names]
    loop_start = time.perf_counter()
    with torch.inference_mode():
        for item in tqdm(iter_frames(FrameDataset(paths, names, tiler), num_workers), total=len(paths),
                         desc="predict", unit="frame", disable=not progress):
            if item["error"] is not None:
                summary.failures.append(dict(image=item["name"], error=item["error"]))
                continue
            tiles: Tiles = item["tiles"]
            result = trusted(tiles)  # calibrated probs, raw logits, OOD columns (one backbone pass)
            probs = result.probs
            table = patch_table(item["name"], tiles, probs, class_names, prob_cols)
            patch_rows.append(table.assign(**result.patch_columns))
            image_rows.append({**image_row(item["name"], tiles, probs, dead), **result.image_columns})
            if counter is not None:  # a cell-trained model: count cells, not windows
                image_rows[-1] = _with_cells(image_rows[-1], counter(tiles))
            if overlays:
                overlay = heatmap_overlay(tiles.frame8, tiles.boxes, probs[:, dead], tiles.empty)
                row = image_rows[-1]
                caption = (f"{item['name']}: {row['n_dead']}/{row['n_patches'] - row['n_empty']} patches "
                           f"{class_names[dead]} ({row['n_empty']} empty)")
                if result.image_columns.get("ood_flag"):
                    overlay = mark_ood(overlay)
                    caption += " - OOD, see images.csv"
                overlay = add_legend(overlay, caption, dead_label=class_names[dead])
                file = unique_path(overlay_dir / f"{flat_name(item['name'])}_heatmap.png")
                save_overlay(file, overlay)
            summary.n_ok += 1
            summary.n_patches += len(tiles.empty)
    summary.loop_seconds = time.perf_counter() - loop_start
    summary.seconds = time.perf_counter() - started
    if summary.n_ok == 0:
        write_json(out_dir / "summary.json", summary.to_dict())
        raise PredictError(
            f"none of the {len(paths)} image(s) under {input} could be processed; first error: "
            f"{summary.failures[0]['error']}"
        )
    patches = pd.concat(patch_rows, ignore_index=True)
    images = pd.DataFrame(image_rows)
    summary.files["patches"] = write_csv(out_dir / "patches.csv", patches)
    summary.files["images"] = write_csv(out_dir / "images.csv", images.drop(columns=["sum_p_dead"]))
    if overlays:
        summary.files["overlays"] = str(overlay_dir)
    summary.ood_line = ood_summary_line(images) or ""
    if cells_table is not None:
        from stainfree.inference.regions import predict_cells

        cells = predict_cells(cells_table, tiler.spec, trusted, root)
        summary.files["cells"] = write_csv(out_dir / "cells.csv", cells)
    if summary.failures:
        summary.files["failed"] = write_csv(out_dir / "failed.csv", pd.DataFrame(summary.failures))
    if plate is not None:
        from stainfree.inference.plate_report import plate_report

        summary.files.update(plate_report(plate, images, out_dir, plate_map, summary.warnings,
                                          n_boot=n_boot, seed=seed, exclude_ood=ood_exclude))
    summary.files["summary"] = write_json(out_dir / "summary.json",
                                           dict(summary.to_dict(), ckpt_path=str(ckpt_path),
                                                class_names=class_names, dead_class=class_names[dead],
                                                device=str(dev), temperature=trusted.temperature,
                                                ood_reference=trusted.scorer is not None,
                                                ood_exclude=ood_exclude))
    return summary


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
        output_dir=cfg.paths.output_dir,
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
        ood_exclude=bool(cfg.get("ood_exclude", True)),
        regions=cfg.get("regions"),
        region_point_size=cfg.get("region_point_size"),
        cell_fraction=str(cfg.get("cell_fraction", "auto")),
    )
    print(summary.report())

"""Predict on raw frames: tile like training, classify non-empty patches, write per-patch,
per-image and (with a plate map) per-well results.

A folder of raw frames is a user's real data, so one bad file must never cost the whole run:
each file's failure is recorded and reported at the end, and the run fails only when nothing
could be processed. Reading and tiling run in DataLoader workers so the accelerator is not kept
waiting on the CPU.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from stainfree.data.imageio import list_images, read_image
from stainfree.inference.tiling import Tiles, build_tiler
from stainfree.inference.writers import write_csv, write_json
from stainfree.utils import runtime
from stainfree.utils.atomic import unique_path


class PredictError(RuntimeError):
    """The prediction run as a whole cannot proceed; the message says what to fix."""


@dataclass
class PredictSummary:
    """What happened: counts, failures (file -> reason), written files, throughput."""

    output_dir: Path
    n_images: int = 0
    n_ok: int = 0
    n_patches: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    loop_seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        """Throughput of the read -> tile -> classify -> write loop (model loading excluded)."""
        return self.n_ok / self.loop_seconds if self.loop_seconds > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return dict(output_dir=str(self.output_dir), n_images=self.n_images, n_ok=self.n_ok,
                    n_failed=len(self.failures), n_patches=self.n_patches, failures=self.failures,
                    files=self.files, warnings=self.warnings, seconds=round(self.seconds, 3),
                    loop_seconds=round(self.loop_seconds, 3),
                    frames_per_second=round(self.frames_per_second, 3) if self.n_ok else None)

    def report(self) -> str:
        """Human summary printed at the end of a run."""
        lines = [f"predicted {self.n_ok}/{self.n_images} image(s), {self.n_patches} patches, "
                 f"{self.frames_per_second:.2f} frames/s -> {self.output_dir}"]
        if self.failures:
            lines.append(f"{len(self.failures)} file(s) skipped:")
            lines += [f"  {f['image']}: {f['error']}" for f in self.failures]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when present, else mps, else cpu; anything else is passed to torch."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise PredictError(f"device={device!r} is not a torch device; use auto, cpu, cuda or cuda:0") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PredictError(f"device={device} requested but CUDA is not available here; use device=auto or cpu")
    return dev


def load_model(ckpt_path: str | os.PathLike, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The classifier in eval mode plus the checkpoint's ``stainfree`` metadata (class names, preprocess)."""
    from stainfree.models.classifier import LiveDeadClassifier

    path = Path(ckpt_path)
    if not path.is_file():
        raise PredictError(f"ckpt_path={ckpt_path}: no such checkpoint; point it at <run>/checkpoints/best.ckpt")
    try:
        model = LiveDeadClassifier.from_checkpoint(str(path), map_location=device)
    except Exception as exc:  # noqa: BLE001 - any load failure means the same to the user
        raise PredictError(f"{path}: could not be loaded as a stainfree checkpoint ({exc}); "
                           "use a .ckpt written by train.py") from exc
    meta = dict(getattr(model, "run_metadata", {}) or {})
    if not meta.get("preprocess"):
        meta["preprocess"] = _preprocess_from_config(path, meta.get("config") or {})
        meta["preprocess_rebuilt"] = True
    meta.setdefault("class_names", list(model.class_names))
    return model.to(device).eval(), meta


def _preprocess_from_config(path: Path, config: dict) -> dict:
    """Older checkpoints lack ``stainfree.preprocess``: rebuild it from the run's resolved data config.

    The DataModule is only constructed (its data must still be where training left it); nothing
    is trained or re-labelled.
    """
    data_cfg = config.get("data") if isinstance(config, dict) else None
    if not data_cfg or "_target_" not in data_cfg:
        raise PredictError(f"{path}: has no 'stainfree.preprocess' entry and no data config to rebuild it from, "
                           "so the tiling used in training is unknown; use a checkpoint written by train.py")
    import hydra

    try:
        datamodule = hydra.utils.instantiate(data_cfg)
        return dict(datamodule.preprocess_config())
    except Exception as exc:  # noqa: BLE001 - any failure means the same to the user
        raise PredictError(f"{path}: has no 'stainfree.preprocess' entry and rebuilding it from the run's data "
                           f"config failed ({exc}); retrain with the current train.py, which stores it") from exc


def dead_class_index(class_names: list[str], positive_class: str | None) -> int:
    """Which class counts as 'dead': ``positive_class`` if given, 'dead' if present, else the last."""
    if positive_class:
        if positive_class not in class_names:
            raise PredictError(f"positive_class={positive_class!r} is not one of the checkpoint's classes "
                               f"{class_names}; pick one of them")
        return class_names.index(positive_class)
    return class_names.index("dead") if "dead" in class_names else len(class_names) - 1


class _FrameDataset(Dataset):
    """Reads and tiles one raw frame per item; errors become values so the run goes on."""

    def __init__(self, paths: list[Path], names: list[str], tiler) -> None:
        self.paths, self.names, self.tiler = paths, names, tiler

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            image = read_image(self.paths[i], grey=True)
            tiles = self.tiler(image)
            return dict(name=self.names[i], tiles=tiles, error=None)
        except Exception as exc:  # noqa: BLE001 - recorded per file and reported in the summary
            message = str(exc) if str(self.paths[i]) in str(exc) else f"{self.paths[i]}: {exc}"
            return dict(name=self.names[i], tiles=None, error=message)


def _image_names(root: Path, paths: list[Path]) -> list[str]:
    """Names as they appear in the CSVs: path relative to the input folder (POSIX)."""
    if root.is_file():
        return [root.name]
    return [p.relative_to(root).as_posix() for p in paths]


def _classify(model: torch.nn.Module, patches: np.ndarray, device: torch.device, batch_size: int,
              amp_dtype: torch.dtype | None) -> np.ndarray:
    """Softmax probabilities [N, C] for uint8 patches [N, S, S], in batches."""
    out = []
    pin = device.type == "cuda"
    for start in range(0, len(patches), batch_size):
        chunk = torch.from_numpy(patches[start:start + batch_size]).unsqueeze(1)
        if pin:
            chunk = chunk.pin_memory()
        chunk = chunk.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(chunk)
        out.append(logits.float().softmax(dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def _iter_frames(dataset: _FrameDataset, num_workers: int) -> Iterator[dict[str, Any]]:
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                        collate_fn=lambda item: item, prefetch_factor=2 if num_workers else None,
                        persistent_workers=False, worker_init_fn=runtime.worker_init)
    yield from loader


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
) -> PredictSummary:
    """Run the whole prediction; returns the summary (also written as summary.json).

    Raises :class:`PredictError` before any work when the checkpoint/input/plate map is unusable,
    and after the loop when no image at all could be processed.
    """
    from tqdm.auto import tqdm

    from stainfree.inference.overlay import add_legend, heatmap_overlay, save_overlay
    from stainfree.inference.platemap import read_plate_map

    if batch_size < 1:
        raise PredictError(f"batch_size={batch_size}: must be >= 1")
    started = time.perf_counter()
    out_dir = Path(output_dir)
    if not Path(ckpt_path).is_file():
        raise PredictError(f"ckpt_path={ckpt_path}: no such checkpoint; point it at <run>/checkpoints/best.ckpt")
    root = Path(input)
    if not root.exists():
        raise PredictError(f"input={input}: no such file or folder; pass a raw image or a folder of them")
    paths = list_images(root)
    if not paths:
        raise PredictError(f"input={input}: no PNG/JPG/TIFF images found (searched recursively)")
    plate = read_plate_map(plate_map) if plate_map else None  # fail before hours of inference
    dev = resolve_device(device)
    model, meta = load_model(ckpt_path, dev)
    amp_dtype = _amp_dtype(precision, dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    class_names = [str(c) for c in meta["class_names"]]
    dead = dead_class_index(class_names, positive_class)
    tiler = build_tiler(meta["preprocess"])
    names = _image_names(root, paths)
    summary = PredictSummary(output_dir=out_dir, n_images=len(paths))
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
        for item in tqdm(_iter_frames(_FrameDataset(paths, names, tiler), num_workers), total=len(paths),
                         desc="predict", unit="frame", disable=not progress):
            if item["error"] is not None:
                summary.failures.append(dict(image=item["name"], error=item["error"]))
                continue
            tiles: Tiles = item["tiles"]
            probs = np.full((len(tiles.empty), len(class_names)), np.nan, np.float32)
            keep = ~tiles.empty
            if keep.any():
                probs[keep] = _classify(model, tiles.patches[keep], dev, batch_size, amp_dtype)
            table = _patch_table(item["name"], tiles, probs, class_names, prob_cols)
            patch_rows.append(table)
            image_rows.append(_image_row(item["name"], tiles, probs, dead))
            if overlays:
                overlay = heatmap_overlay(tiles.frame8, tiles.boxes, probs[:, dead], tiles.empty)
                row = image_rows[-1]
                caption = (f"{item['name']}: {row['n_dead']}/{row['n_patches'] - row['n_empty']} patches "
                           f"{class_names[dead]} ({row['n_empty']} empty)")
                overlay = add_legend(overlay, caption, dead_label=class_names[dead])
                file = unique_path(overlay_dir / f"{_flat(item['name'])}_heatmap.png")
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
    if summary.failures:
        summary.files["failed"] = write_csv(out_dir / "failed.csv", pd.DataFrame(summary.failures))
    if plate is not None:
        from stainfree.inference.plate_report import plate_report

        summary.files.update(plate_report(plate, images, out_dir, plate_map, summary.warnings,
                                          n_boot=n_boot, seed=seed))
    summary.files["summary"] = write_json(out_dir / "summary.json",
                                           dict(summary.to_dict(), ckpt_path=str(ckpt_path),
                                                class_names=class_names, dead_class=class_names[dead],
                                                device=str(dev)))
    return summary


def _amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """'auto' = bf16 autocast on CUDA (what training uses there), full precision elsewhere."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    table = {"32": None, "fp32": None, "bf16": torch.bfloat16, "16": torch.float16, "fp16": torch.float16}
    if precision not in table:
        raise PredictError(f"precision={precision!r}: use auto, 32, bf16 or 16")
    return table[precision]


def _patch_table(name: str, tiles: Tiles, probs: np.ndarray, class_names: list[str],
                 prob_cols: list[str]) -> pd.DataFrame:
    table = pd.DataFrame({"image": name, "y": tiles.boxes[:, 0], "x": tiles.boxes[:, 1],
                          "empty": tiles.empty.astype(bool)})
    for j, col in enumerate(prob_cols):
        table[col] = probs[:, j]
    predicted = np.array(class_names, dtype=object)[np.nan_to_num(probs, nan=-1).argmax(axis=1)]
    table["predicted"] = np.where(tiles.empty, "empty", predicted)
    return table


def _image_row(name: str, tiles: Tiles, probs: np.ndarray, dead: int) -> dict[str, Any]:
    keep = ~tiles.empty
    used = int(keep.sum())
    n_dead = int((probs[keep].argmax(axis=1) == dead).sum()) if used else 0
    sum_p = float(probs[keep, dead].sum()) if used else 0.0
    return dict(image=name, height=int(tiles.frame8.shape[0]), width=int(tiles.frame8.shape[1]),
                n_patches=int(len(tiles.empty)), n_empty=int(tiles.empty.sum()), n_dead=n_dead,
                dead_fraction=n_dead / used if used else math.nan,
                mean_p_dead=sum_p / used if used else math.nan, sum_p_dead=sum_p)


def _flat(name: str) -> str:
    """Relative image path -> one file name (sub/a.tif -> sub__a)."""
    return Path(name).with_suffix("").as_posix().replace("/", "__")

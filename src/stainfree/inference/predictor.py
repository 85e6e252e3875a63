"""The predictor's parts: load a checkpoint's model, read and tile raw frames in DataLoader workers,
classify patches, and turn probabilities into per-patch and per-image rows.

``stainfree.tasks.predict`` wires them into the predict run. A frame that cannot be read becomes
a recorded failure, not an exception, so one bad file never costs a whole folder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from stainfree.inference.tiling import Tiles
from stainfree.models.checkpoint import CheckpointMeta
from stainfree.utils import runtime
from stainfree.utils.errors import UserError

# image_row columns the per-well statistics need but images.csv does not show
INTERNAL_COLUMNS = ("sum_p_dead",)


class PredictError(UserError):
    """The prediction run as a whole cannot proceed; the message says what to fix."""


@dataclass
class PredictSummary:
    """What happened: counts, failures (file -> reason), written files, throughput."""

    output_dir: Path
    n_images: int = 0
    n_ok: int = 0
    n_resumed: int = 0  # of n_ok, images an earlier (killed) run had finished: read from its log
    n_patches: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    loop_seconds: float = 0.0
    ood_line: str = ""  # "4 of 6 images look unlike the training data (...)" (inference/trust_columns)

    @property
    def frames_per_second(self) -> float:
        """Throughput of the read -> tile -> classify -> write loop (model loading excluded)."""
        return (self.n_ok - self.n_resumed) / self.loop_seconds if self.loop_seconds > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return dict(output_dir=str(self.output_dir), n_images=self.n_images, n_ok=self.n_ok,
                    n_resumed=self.n_resumed, n_failed=len(self.failures), n_patches=self.n_patches,
                    ood=self.ood_line or None, failures=self.failures,
                    files=self.files, warnings=self.warnings, seconds=round(self.seconds, 3),
                    loop_seconds=round(self.loop_seconds, 3),
                    frames_per_second=round(self.frames_per_second, 3) if self.n_ok else None)

    def report(self) -> str:
        """Human summary printed at the end of a run."""
        resumed = f" ({self.n_resumed} done by the earlier run)" if self.n_resumed else ""
        lines = [f"predicted {self.n_ok}/{self.n_images} image(s){resumed}, {self.n_patches} patches, "
                 f"{self.frames_per_second:.2f} frames/s -> {self.output_dir}"]
        if self.ood_line:
            lines.append(self.ood_line)
        if self.failures:
            lines.append(f"{len(self.failures)} file(s) failed (listed in failed.csv), the run went on:")
            lines += [f"  {f['image']}: {f['reason']}" for f in self.failures]
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


def load_model(checkpoint: CheckpointMeta, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The classifier in eval mode plus what predict needs from the checkpoint (class names, preprocess,
    the trust blocks when present)."""
    from stainfree.models.classifier import LiveDeadClassifier

    path = Path(checkpoint.path)
    checkpoint.check_loadable(() if checkpoint.preprocess else ("data",))  # builds only allowed classes
    try:
        model = LiveDeadClassifier.from_checkpoint(checkpoint, map_location=device)
    except Exception as exc:  # noqa: BLE001 - any load failure means the same to the user
        raise PredictError(f"{path}: could not be loaded as a stainfree checkpoint ({exc}); "
                           "use a .ckpt written by train.py") from exc
    meta: dict[str, Any] = dict(checkpoint.extra)  # e.g. the trust blocks 'calibration' and 'ood'
    meta.update(class_names=checkpoint.class_names or list(model.class_names), preprocess=checkpoint.preprocess)
    if not meta["preprocess"]:
        meta["preprocess"] = _preprocess_from_config(path, checkpoint.config)
        meta["preprocess_rebuilt"] = True
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


class FrameDataset(Dataset):
    """Reads and tiles one raw frame per item; errors become values so the run goes on."""

    def __init__(self, paths: list[Path], names: list[str], tiler) -> None:
        self.paths, self.names, self.tiler = paths, names, tiler

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            tiles = self.tiler(self.paths[i])  # read by the checkpoint's spec (channel, 8-bit rule)
            return dict(name=self.names[i], tiles=tiles, error=None)
        except Exception as exc:  # noqa: BLE001 - recorded per file and reported in the summary
            return dict(name=self.names[i], tiles=None, error=failure_reason(self.paths[i], exc))


def failure_reason(path: Path, exc: BaseException) -> str:
    """One line for failed.csv that names the file, whatever raised."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message if str(path) in message else f"{path}: {message}"


def image_names(root: Path, paths: list[Path]) -> list[str]:
    """Names as they appear in the CSVs: path relative to the input folder (POSIX)."""
    if root.is_file():
        return [root.name]
    return [p.relative_to(root).as_posix() for p in paths]


def iter_frames(dataset: FrameDataset, num_workers: int) -> Iterator[dict[str, Any]]:
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                        collate_fn=lambda item: item, prefetch_factor=2 if num_workers else None,
                        persistent_workers=False, worker_init_fn=runtime.worker_init)
    yield from loader


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """'auto' = bf16 autocast on CUDA (what training uses there), full precision elsewhere."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    table = {"32": None, "fp32": None, "bf16": torch.bfloat16, "16": torch.float16, "fp16": torch.float16}
    if precision not in table:
        raise PredictError(f"precision={precision!r}: use auto, 32, bf16 or 16")
    return table[precision]


def patch_table(name: str, tiles: Tiles, probs: np.ndarray, class_names: list[str],
                prob_cols: list[str]) -> pd.DataFrame:
    table = pd.DataFrame({"image": name, "y": tiles.boxes[:, 0], "x": tiles.boxes[:, 1],
                          "empty": tiles.empty.astype(bool)})
    for j, col in enumerate(prob_cols):
        table[col] = probs[:, j]
    predicted = np.array(class_names, dtype=object)[np.nan_to_num(probs, nan=-1).argmax(axis=1)]
    table["predicted"] = np.where(tiles.empty, "empty", predicted)
    return table


def image_row(name: str, tiles: Tiles, probs: np.ndarray, dead: int) -> dict[str, Any]:
    """THE per-image result (one row of images.csv, plus ``INTERNAL_COLUMNS``): the results log and
    every table are generic over its keys, so a new per-image column is added here only."""
    keep = ~tiles.empty
    used = int(keep.sum())
    n_dead = int((probs[keep].argmax(axis=1) == dead).sum()) if used else 0
    sum_p = float(probs[keep, dead].sum()) if used else 0.0
    return dict(image=name, height=int(tiles.frame8.shape[0]), width=int(tiles.frame8.shape[1]),
                n_patches=int(len(tiles.empty)), n_empty=int(tiles.empty.sum()), n_dead=n_dead,
                dead_fraction=n_dead / used if used else math.nan,
                mean_p_dead=sum_p / used if used else math.nan, sum_p_dead=sum_p)


def flat_name(name: str) -> str:
    """Relative image path -> one file name (sub/a.tif -> sub__a)."""
    return Path(name).with_suffix("").as_posix().replace("/", "__")


def overlay_names(names: list[str]) -> dict[str, str]:
    """Image name -> its overlay's file name, unique over the whole input (sub/a.tif and sub__a.png
    -> sub__a_heatmap.png, sub__a_1_heatmap.png in input order), so a resumed run names each
    image's overlay as the killed run did."""
    taken: set[str] = set()
    out = {}
    for name in names:
        stem, k = flat_name(name), 0
        while (file := f"{stem}{f'_{k}' if k else ''}_heatmap.png") in taken:
            k += 1
        taken.add(file)
        out[name] = file
    return out

"""Fit a trained model's trust profile: the checkpoint blocks ``calibration`` and ``ood``.

- ``calibration``: temperature fitted on the validation split's logits (the DataModule's batches).
- ``ood``: the input contract (statistics of the training and validation source images) and the
  feature-space reference (Mahalanobis on the penultimate features of the training images'
  patches, thresholds at the 99th percentile of the validation images' patches and of their
  per-image medians).

The OOD reference is built from the SOURCE images through the checkpoint's own tiler (the one
predict.py uses), so it describes exactly what predict.py will later score: every non-empty
patch, including those the training labels left out (e.g. JIMT-1's ambiguous PI band). Such
patches have no label, so the class of each patch for the class-conditional means is the
model's prediction.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from stainfree.trust import calibration
from stainfree.trust.features import patch_logits_and_features
from stainfree.trust.image_stats import image_statistics
from stainfree.trust.input_contract import fit_input_reference
from stainfree.trust.mahalanobis import fit_mahalanobis, mahalanobis_distance, subsample
from stainfree.utils.pylogger import get_logger

log = get_logger(__name__)

OOD_VERSION = 1
THRESHOLD_QUANTILE = 0.99
BLOCKS = ("calibration", "ood")


class TrustProfileError(RuntimeError):
    """The data needed to fit the profile are missing or unreadable; the message says what to fix."""


@dataclass
class ProfileLimits:
    """Caps that keep the fit to seconds-minutes on big datasets (seeded subsamples)."""

    max_images: int = 200
    max_patches: int = 20000
    batch_size: int = 64
    seed: int = 0


# ----------------------------------------------------------------------------- source images
def source_images(datamodule: Any, stage: str) -> list[Path]:
    """The source image file of every sample of ``stage``, once each, in split-table order.

    Uses the split table's ``path`` column when present; JIMT-1 tables name frames by
    ``frame_id``, resolved through the DataModule's manifest (its ``bf_path`` column).
    """
    table = datamodule.split_table(stage)
    if "path" in table:
        names = list(dict.fromkeys(str(p) for p in table["path"]))
        root = getattr(datamodule, "root", None) or getattr(getattr(datamodule, "manifest", None), "parent", None)
        return [_resolve(Path(n), root) for n in names]
    manifest = getattr(datamodule, "manifest", None)
    if "frame_id" in table and manifest is not None:
        from stainfree.data.jimt.manifest import load_manifest

        frames = load_manifest(manifest).set_index("frame_id")["bf_abs"]
        ids = list(dict.fromkeys(str(f) for f in table["frame_id"]))
        missing = [i for i in ids if i not in frames.index]
        if missing:
            raise TrustProfileError(f"{manifest} does not list frame(s) {missing[:3]} of the {stage} split; "
                                    "the cache belongs to another manifest: delete the cache and rerun")
        return [Path(frames[i]) for i in ids]
    raise TrustProfileError(
        f"{type(datamodule).__name__}.split_table('{stage}') has neither a 'path' column nor 'frame_id' + a "
        "manifest, so the source images are unknown; add the image file of each sample as a 'path' column"
    )


def _resolve(path: Path, root: Any) -> Path:
    if path.is_absolute() or path.exists() or root is None:
        return path
    return Path(root) / path


# ----------------------------------------------------------------------------- model passes
@torch.no_grad()
def split_logits(model: torch.nn.Module, datamodule: Any, stage: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets of one split from the DataModule's own (unaugmented) loader."""
    loader = getattr(datamodule, f"{stage}_dataloader")()
    device = next(model.parameters()).device
    logits, target, index = [], [], []
    for batch in loader:
        logits.append(model(batch["image"].to(device)).float().cpu())
        target.append(batch["target"].cpu())
        index.append(batch["index"].cpu())
    if not logits:
        raise TrustProfileError(f"the {stage} split is empty: temperature scaling needs validation samples")
    order = torch.argsort(torch.cat(index), stable=True)
    return torch.cat(logits)[order].numpy(), torch.cat(target)[order].numpy()


# ----------------------------------------------------------------------------- fitting
@dataclass
class _ImagePass:
    stats: list[dict[str, Any]] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)  # one [n_i, d] array per image
    classes: list[np.ndarray] = field(default_factory=list)


def _pass_images(model: torch.nn.Module, paths: list[Path], preprocess: Mapping[str, Any],
                 per_image: int | None, limits: ProfileLimits) -> _ImagePass:
    """Read, tile (the checkpoint's tiler), measure and featurise each image."""
    from stainfree.data.imageio import ImageReadError, read_image
    from stainfree.inference.tiling import build_tiler

    tiler = build_tiler(dict(preprocess))
    out = _ImagePass()
    for k, path in enumerate(paths):
        try:
            raw = read_image(path, grey=True)
        except ImageReadError as exc:
            raise TrustProfileError(f"cannot read a source image for the OOD reference: {exc}") from exc
        tiles = tiler(raw)
        out.stats.append(image_statistics(raw, tiles.frame8, preprocess))
        keep = np.flatnonzero(~tiles.empty)
        if per_image is not None and len(keep) > per_image:
            keep = keep[subsample(len(keep), per_image, limits.seed + k)]
        logits, feats = patch_logits_and_features(model, tiles.patches[keep], limits.batch_size)
        out.features.append(feats)
        out.classes.append(logits.argmax(axis=1) if len(logits) else np.zeros(0, np.int64))
    return out


def _feature_reference(train: _ImagePass, val: _ImagePass, limits: ProfileLimits) -> dict[str, Any]:
    train_feats = [f for f in train.features if len(f)]
    if sum(len(f) for f in train_feats) < 2:
        raise TrustProfileError("the training images gave fewer than 2 non-empty patches: no feature reference")
    ref = fit_mahalanobis(np.concatenate(train_feats), np.concatenate([c for c in train.classes if len(c)]),
                          max_samples=limits.max_patches, seed=limits.seed)
    per_image = [mahalanobis_distance(f, ref) for f in val.features if len(f)]
    if not per_image:
        raise TrustProfileError("the validation images gave no non-empty patches: no OOD threshold")
    val_patch = np.concatenate(per_image)
    patch_threshold = float(np.quantile(val_patch, THRESHOLD_QUANTILE))
    medians = np.array([np.median(d) for d in per_image])
    image_threshold = max(patch_threshold, float(np.quantile(medians, THRESHOLD_QUANTILE)))
    ref.update(class_source="predicted", quantile=THRESHOLD_QUANTILE, patch_threshold=patch_threshold,
               image_threshold=image_threshold, n_val_patches=int(len(val_patch)), n_val_images=len(per_image),
               val_patch_median=float(np.median(val_patch)))
    return ref


def _is_window_layout(preprocess: Mapping[str, Any]) -> bool:
    """Does predict cut fixed sliding windows (a frame's size then matters, not its tile side)?"""
    from stainfree.data.spec import PreprocessSpec

    return PreprocessSpec.from_dict(dict(preprocess)).layout.kind == "windows"


def fit_ood(model: torch.nn.Module, datamodule: Any, preprocess: Mapping[str, Any],
            limits: ProfileLimits | None = None) -> dict[str, Any]:
    """The ``ood`` block: input contract from train+val images, features from train, thresholds from val."""
    limits = limits or ProfileLimits()
    paths_by_split = {}
    for k, stage in enumerate(("train", "val")):
        paths = source_images(datamodule, stage)
        paths_by_split[stage] = [paths[i] for i in subsample(len(paths), limits.max_images, limits.seed + k)]
    n_train = max(1, len(paths_by_split["train"]))
    per_image = max(1, math.ceil(limits.max_patches / n_train))
    train = _pass_images(model, paths_by_split["train"], preprocess, per_image, limits)
    val = _pass_images(model, paths_by_split["val"], preprocess, None, limits)
    return dict(
        version=OOD_VERSION,
        input=fit_input_reference(train.stats + val.stats, window_layout=_is_window_layout(preprocess)),
        features=_feature_reference(train, val, limits),
        n_train_images=len(paths_by_split["train"]), n_val_images=len(paths_by_split["val"]),
    )


def missing_blocks(meta: Mapping[str, Any] | None) -> list[str]:
    """Which of ``calibration``/``ood`` a checkpoint's ``stainfree`` block lacks."""
    meta = meta or {}
    return [b for b in BLOCKS if not meta.get(b)]


def fit_trust_profile(model: torch.nn.Module, datamodule: Any, blocks: Iterable[str] = BLOCKS,
                      limits: ProfileLimits | None = None) -> dict[str, Any]:
    """Fit the requested blocks for ``model`` (in eval mode, on its current device).

    The OOD block needs the source images; when they cannot be read the error is logged and
    the block left out (calibration alone is still worth having), never silently.
    """
    limits = limits or ProfileLimits()
    start = time.time()
    was_training = model.training
    model.eval()
    out: dict[str, Any] = {}
    try:
        if "calibration" in blocks:
            logits, target = split_logits(model, datamodule, "val")
            out["calibration"] = calibration.fit_calibration(logits, target)
            c = out["calibration"]
            log.info("calibration: T = %.3f on %d validation samples, ECE %.4f -> %.4f",
                     c["temperature"], c["n_val"], c["ece_val_before"], c["ece_val_after"])
        if "ood" in blocks:
            preprocess = (getattr(model, "run_metadata", {}) or {}).get("preprocess") or datamodule.preprocess_config()
            try:
                out["ood"] = fit_ood(model, datamodule, preprocess, limits)
            except TrustProfileError as exc:
                log.warning("no OOD reference stored: %s", exc)
            else:
                f = out["ood"]["features"]
                log.info("OOD reference: %d train / %d val images, %d train patches (%d-d features), "
                         "patch threshold %.2f, image threshold %.2f", out["ood"]["n_train_images"],
                         out["ood"]["n_val_images"], f["n_fit"], f["dim"], f["patch_threshold"], f["image_threshold"])
    finally:
        model.train(was_training)
    log.info("trust profile fitted in %.1f s", time.time() - start)
    return out


def fit_missing_blocks(model: torch.nn.Module, datamodule: Any, device: torch.device | str = "cpu",
                       limits: ProfileLimits | None = None) -> dict[str, Any]:
    """For eval.py: fit whatever trust blocks ``model.run_metadata`` lacks, add them to it, return them.

    The model is moved to ``device`` for the fit and back to where it was; the DataModule is
    prepared and set up for the train/val splits.
    """
    missing = missing_blocks(getattr(model, "run_metadata", None))
    if not missing:
        return {}
    log.info("the checkpoint has no %s block: fitting on its validation split", " / ".join(missing))
    datamodule.prepare_data()
    datamodule.setup("fit")
    home = next(model.parameters()).device
    model.to(device)
    try:
        blocks = fit_trust_profile(model, datamodule, missing, limits)
    finally:
        model.to(home)
    model.run_metadata.update(blocks)
    return blocks

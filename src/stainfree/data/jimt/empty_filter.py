"""Removing empty / unusable patches before labelling (empty glass has background PI, so it
would otherwise be labelled "live" and teach the network that blank = live).

Methods: ``none``; ``variance`` (window standard deviation below ``threshold`` = empty: cheap,
good when the background is clean); ``svm`` (the paper's: pooled CNN features of each patch +
an SVM fitted on a user folder ``<examples_dir>/{empty,nonempty}/*.png``).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stainfree.data.imageio import list_images, read_image
from stainfree.data.pixels import resize_square, to_8bit
from stainfree.data.spec import EightBit

METHODS = ("none", "variance", "svm")
# Statistic for ``variance``: ``contrast`` (default) = std of the flat-fielded raw BF in percent,
# independent of lamp level and of the per-frame 8-bit stretch (which amplifies noise on an
# empty frame until it looks textured); ``bf8_std`` = std of the 8-bit patch, as in the paper's text.
STATISTICS = {"contrast": 1.0, "bf8_std": 6.0}  # name -> default threshold
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Normalise an ``empty_filter`` config dict; only keys that change the result are kept."""
    method = cfg.get("method", "variance")
    if method not in METHODS:
        raise ValueError(f"empty_filter.method='{method}' is not one of {METHODS}")
    out: dict[str, Any] = {"method": method}
    if method == "variance":
        stat = cfg.get("statistic", "contrast")
        if stat not in STATISTICS:
            raise ValueError(f"empty_filter.statistic='{stat}' is not one of {list(STATISTICS)}")
        thr = cfg.get("threshold")
        out.update(statistic=stat, threshold=float(STATISTICS[stat] if thr is None else thr))
    elif method == "svm":
        if not cfg.get("examples_dir"):
            raise ValueError("empty_filter.method=svm needs empty_filter.examples_dir, a folder with "
                             "empty/ and nonempty/ subfolders of labelled patch images")
        out.update(
            examples_dir=str(Path(cfg["examples_dir"]).expanduser().resolve()),
            backbone=str(cfg.get("backbone", "resnet18")),
            pretrained=bool(cfg.get("pretrained", True)),
            pretrained_path=cfg.get("pretrained_path"),
            feature_size=int(cfg.get("feature_size", 224)),
            C=float(cfg.get("C", 1.0)),
            batch_size=int(cfg.get("batch_size", 64)),
        )
    return out


def contrast_image(frame: np.ndarray) -> np.ndarray:
    """Percent deviation of a lightly smoothed raw BF frame from its smooth background.

    Dividing by a heavily blurred copy removes uneven illumination and the lamp level; the light
    blur (sigma 2 px) averages camera noise away while keeping cell-sized structure.
    """
    f = frame.astype(np.float32)
    h, w = f.shape
    small = cv2.resize(f, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    background = cv2.resize(cv2.GaussianBlur(small, (0, 0), 5.0), (w, h), interpolation=cv2.INTER_LINEAR)
    return (cv2.GaussianBlur(f, (0, 0), 2.0) / np.maximum(background, 1e-3) - 1.0) * 100.0


def examples_digest(examples_dir: str | os.PathLike) -> str:
    """Hash of the example images (names + bytes): relabelling an example invalidates the cache."""
    h = hashlib.sha256()
    root = Path(examples_dir)
    for p in list_images(root):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def load_examples(examples_dir: str | os.PathLike) -> tuple[list[np.ndarray], np.ndarray]:
    """Read ``empty/`` and ``nonempty/`` patches as 8-bit grey; labels 1 = empty, 0 = non-empty."""
    root = Path(examples_dir)
    fix = (f"make {root}/empty/ and {root}/nonempty/ with hand-labelled patch images (PNG/TIFF); "
           "the synthetic generator writes such a folder as empty_examples/")
    if not root.is_dir():
        raise FileNotFoundError(f"empty-filter examples folder not found: {root}; {fix}")
    images, labels = [], []
    for name, label in (("empty", 1), ("nonempty", 0)):
        folder = root / name
        files = list_images(folder) if folder.is_dir() else []
        if len(files) < 2:
            raise ValueError(f"{folder}: needs at least 2 images of class '{name}', found {len(files)}; {fix}")
        for f in files:
            images.append(to_8bit(read_image(f), EightBit()))  # 16-bit examples: the frames' percentile rule
            labels.append(label)
    return images, np.asarray(labels)


def build_feature_backbone(cfg: dict[str, Any]) -> Any:
    """The frozen feature extractor (pooled features, no classifier head), in eval mode."""
    from stainfree.models.backbones import build_backbone  # heavy import: only for the svm method

    net = build_backbone(cfg["backbone"], num_classes=0, in_chans=3, pretrained=cfg["pretrained"],
                         pretrained_path=cfg.get("pretrained_path"), config_key="data.empty_filter")
    return net.eval()


def extract_features(net: Any, patches: Iterator[np.ndarray], size: int) -> np.ndarray:
    """Pooled backbone features for batches of uint8 [B, H, W] patches (grey -> 3 channels, ImageNet norm)."""
    import torch

    feats = []
    with torch.inference_mode():
        for batch in patches:
            resized = np.stack([resize_square(p, size) for p in batch])
            x = resized.astype(np.float32)[..., None] / 255.0
            x = (np.repeat(x, 3, axis=-1) - IMAGENET_MEAN) / IMAGENET_STD
            out = net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
            feats.append(out.reshape(out.shape[0], -1).float().numpy())
    return np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)


@dataclass
class SvmFilter:
    """A fitted empty-patch SVM with its cross-validated F1 on the examples (empty = positive)."""

    model: Any
    cv_f1: float
    n_empty: int
    n_nonempty: int


def fit_svm(features: np.ndarray, labels: np.ndarray, C: float = 1.0, seed: int = 0) -> SvmFilter:
    """Standardise + RBF SVC (balanced classes); F1 from stratified k-fold CV (k <= 5)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    def make() -> Any:
        return make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", class_weight="balanced"))

    n_empty, n_non = int((labels == 1).sum()), int((labels == 0).sum())
    folds = min(5, n_empty, n_non)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    f1 = float(np.mean(cross_val_score(make(), features, labels, cv=cv, scoring="f1")))
    return SvmFilter(model=make().fit(features, labels), cv_f1=f1, n_empty=n_empty, n_nonempty=n_non)


def batched(read: Callable[[int], np.ndarray], n: int, batch_size: int) -> Iterator[np.ndarray]:
    """Yield stacked patches ``read(0..n-1)`` in batches (keeps memory flat on big sets)."""
    for start in range(0, n, batch_size):
        yield np.stack([read(i) for i in range(start, min(n, start + batch_size))])

"""Copies of one field under different names: found, then grouped together (or refused) before splitting.

Exact duplicates: the same decoded grey image (content hash of the pixels, whatever the file
format or name). Near duplicates (optional): flipped / rotated / brightness-shifted copies, found
by the normalised correlation of small high-passed thumbnails under the 8 dihedral transforms.
Either way the groups of the copies are merged, so all their samples land in one split.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd

from stainfree.utils.errors import UserError

THUMB = 32
EXACT_MODES = ("group", "refuse")


class DuplicateImagesError(UserError):
    """Identical images under different names while ``duplicates.exact=refuse``."""


@dataclass(frozen=True)
class DuplicateConfig:
    """``data.duplicates``: exact copies grouped (default) or refused; optional near-duplicate grouping."""

    exact: str = "group"
    near: bool = False
    near_threshold: float = 0.95

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> "DuplicateConfig":
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {"exact", "near", "near_threshold"})
        if unknown:
            raise UserError(f"data.duplicates: unknown key(s) {unknown}; allowed: exact, near, near_threshold")
        out = cls(exact=str(cfg.get("exact") or "group"), near=bool(cfg.get("near") or False),
                  near_threshold=float(cfg.get("near_threshold") or 0.95))
        if out.exact not in EXACT_MODES:
            raise UserError(f"data.duplicates.exact='{out.exact}' is not one of {EXACT_MODES}")
        if not 0.0 < out.near_threshold <= 1.0:
            raise UserError(f"data.duplicates.near_threshold={out.near_threshold} must be in (0, 1]")
        return out


def image_hash(image: np.ndarray) -> str:
    """Content hash of a decoded image (dtype, shape and pixels): equal images, equal hashes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.dtype.str}{image.shape}".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def thumbnail(image8: np.ndarray) -> np.ndarray:
    """THUMB x THUMB uint8 summary of a whole 8-bit image (area average: rotation commutes with it)."""
    return cv2.resize(image8, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def _features(thumbs: np.ndarray) -> np.ndarray:
    """High-passed, zero-mean, unit-norm thumbnails [n, T, T]: illumination and brightness drop out."""
    x = thumbs.astype(np.float32)
    low = np.stack([cv2.GaussianBlur(t, (0, 0), 3.0) for t in x]) if len(x) else x
    x = x - low
    x -= x.mean(axis=(1, 2), keepdims=True)
    norm = np.sqrt((x ** 2).sum(axis=(1, 2), keepdims=True))
    return x / np.maximum(norm, 1e-6)


def _dihedral(x: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of a stack [n, T, T]."""
    rots = [np.rot90(x, k, axes=(1, 2)) for k in range(4)]
    return rots + [r[:, :, ::-1] for r in rots]


def _components(n: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Connected components (size > 1) of an undirected graph on 0..n-1."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comps: dict[int, list[int]] = {}
    for i in range(n):
        comps.setdefault(find(i), []).append(i)
    return [c for c in comps.values() if len(c) > 1]


def join(n: int, clusters: Sequence[Sequence[int]]) -> list[list[int]]:
    """Merge overlapping index clusters over 0..n-1 (copies of copies end up in one cluster)."""
    return _components(n, [(c[0], m) for c in clusters for m in c[1:]])


def exact_clusters(hashes: Sequence[str]) -> list[list[int]]:
    """Index lists of images with identical content."""
    by_hash: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        by_hash.setdefault(h, []).append(i)
    return [v for v in by_hash.values() if len(v) > 1]


def near_clusters(thumbs: np.ndarray, threshold: float, chunk: int = 1024) -> list[list[int]]:
    """Index lists of images whose best dihedral correlation is >= ``threshold`` (chained)."""
    feats = _features(np.asarray(thumbs))
    n = len(feats)
    flat = feats.reshape(n, -1)
    variants = [v.reshape(n, -1) for v in _dihedral(feats)]
    pairs = []
    for start in range(0, n, chunk):
        block = flat[start:start + chunk]
        best = np.max([block @ v.T for v in variants], axis=0)
        rows, cols = np.nonzero(best >= threshold)
        pairs += [(start + r, c) for r, c in zip(rows.tolist(), cols.tolist()) if start + r < c]
    return _components(n, pairs)


def merge_groups(table: pd.DataFrame, image_key: str, clusters: Sequence[Sequence[Any]]) -> tuple[pd.DataFrame, int]:
    """Give every row of the images in one cluster the same group (the smallest member group).

    ``clusters`` hold values of ``table[image_key]``; a group touching two clusters joins them.
    Returns (table, number of groups that disappeared in merges).
    """
    groups = sorted(table["group"].unique())
    index = {g: i for i, g in enumerate(groups)}
    by_image = table.groupby(image_key)["group"].unique()
    pairs = []
    for cluster in clusters:
        members = [index[g] for key in cluster if key in by_image.index for g in by_image[key]]
        pairs += [(members[0], m) for m in members[1:]]
    comps = _components(len(groups), pairs)
    rename = {groups[i]: groups[min(c)] for c in comps for i in c}
    out = table.copy()
    out["group"] = out["group"].map(lambda g: rename.get(g, g))
    return out, sum(len(c) - 1 for c in comps)


def describe(clusters: Sequence[Sequence[Any]], limit: int = 3) -> str:
    """'a = b, c = d (+2 more)' for a one-line notice."""
    shown = [" = ".join(str(m) for m in c) for c in clusters[:limit]]
    more = f" (+{len(clusters) - limit} more)" if len(clusters) > limit else ""
    return ", ".join(shown) + more

"""The crop store: every sample's model input, uint8 [N, S, S] in one memory-mapped ``crops.npy``.

Built once from a sample table with ``pixels`` (one image decoded once, all its regions cut;
threads, as cv2 releases the GIL), atomically (``utils.atomic.atomic_dir``), in
``<cache_dir>/samples-<what>-<data>/`` (``data.identity``: keyed by the pixel spec, the regions and
every source file's identity; verified on reuse). Training then costs a slice per sample, no decoding.

Also kept per image: its content hash (exact duplicates), a thumbnail (near duplicates) and its
size; per row: the integer region actually cut and the 8-bit std of its source pixels (the
background threshold predict uses for crop-trained models).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from stainfree.data import duplicates, identity, pixels
from stainfree.data.samples import BOX, SampleTableError
from stainfree.data.spec import PreprocessSpec
from stainfree.utils.atomic import atomic_dir

STORE_VERSION = 1
PREFIX = "samples"
# (path, channel) -> (uint8 H x W image made by pixels.load_source, content hash of the decoded grey image)
Loader = Callable[[str, "int | None"], "tuple[np.ndarray, str]"]


def default_loader(spec: PreprocessSpec) -> Loader:
    """Decode with ``pixels`` (grey plane, then the 8-bit rule); hash the grey plane before 8-bit."""

    def load(path: str, channel: int | None) -> tuple[np.ndarray, str]:
        raw = pixels.read_grey(path, spec.channel if channel is None else channel)
        return pixels.to_8bit(raw, spec.to_8bit), duplicates.image_hash(raw)

    return load


@dataclass
class CropStore:
    """A finished store: ``array`` rows follow the table rows it was built from."""

    folder: Path
    rows: pd.DataFrame
    images: pd.DataFrame
    built: bool = False
    seconds: float = 0.0
    _array: np.ndarray | None = field(default=None, repr=False)

    @property
    def array_path(self) -> Path:
        return self.folder / "crops.npy"

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.array_path, mmap_mode="r")
        return self._array

    def thumbnails(self) -> np.ndarray:
        return np.load(self.folder / "thumbs.npy")

    @classmethod
    def open(cls, folder: Path, built: bool = False, seconds: float = 0.0) -> "CropStore":
        rows = pd.read_csv(folder / "rows.csv", dtype={"sample_id": str, "path": str})
        images = pd.read_csv(folder / "images.csv", dtype={"path": str, "image_hash": str})
        return cls(folder=folder, rows=rows, images=images, built=built, seconds=seconds)


def _image_units(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (path, channel) in order of first appearance, with the table rows it serves."""
    channel = table["channel"] if "channel" in table.columns else pd.Series(pd.NA, index=table.index)
    key = table["path"].astype(str) + "\x00" + channel.astype("string").fillna("")
    first = ~key.duplicated()
    units = pd.DataFrame({"path": table.loc[first, "path"].to_numpy(),
                          "channel": channel[first].to_numpy(), "key": key[first].to_numpy()})
    members = pd.Series(np.arange(len(table))).groupby(key.to_numpy()).indices
    units["rows"] = [np.asarray(members[k], dtype=np.int64) for k in units["key"]]
    return units.drop(columns="key")


def _settings(table: pd.DataFrame, spec: PreprocessSpec) -> dict:
    regions = table[["path", *BOX]].copy()
    regions["channel"] = table["channel"] if "channel" in table.columns else ""
    return {"version": STORE_VERSION, "spec": spec.pixel_dict(),
            "regions": identity.digest(regions.to_csv(index=False), 32)}


def _fill(folder: Path, table: pd.DataFrame, units: pd.DataFrame, spec: PreprocessSpec, loader: Loader,
          workers: int) -> None:
    """Cut every region into ``crops.npy``; per image and per row records into CSV/NPY files."""
    n, size = len(table), spec.input_size
    crops = np.lib.format.open_memmap(folder / "crops.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
    boxes = table[list(BOX)].to_numpy(np.float64)
    sizes = (table[["image_height", "image_width"]].to_numpy(np.int64)
             if {"image_height", "image_width"} <= set(table.columns) else None)
    cut = np.zeros((n, 4), np.int64)
    std = np.zeros(n, np.float64)
    thumbs = np.zeros((len(units), duplicates.THUMB, duplicates.THUMB), np.uint8)
    meta: list[tuple[int, int, str]] = [(0, 0, "")] * len(units)

    def work(u: int) -> None:
        path, channel, rows = units.at[u, "path"], units.at[u, "channel"], units.at[u, "rows"]
        image8, digest = loader(path, None if pd.isna(channel) else int(channel))
        h, w = image8.shape
        if sizes is not None and (sizes[rows] != (h, w)).any():
            hh, ww = sizes[rows][np.argmax((sizes[rows] != (h, w)).any(axis=1))]
            raise SampleTableError(f"{path}: the table was made for a {ww}x{hh} image but it decodes as {w}x{h}; "
                                   "the file changed (or has an EXIF rotation): re-export it without rotation")
        b = boxes[rows]
        outside = ~np.isnan(b).any(axis=1) & ((b[:, 0] >= w) | (b[:, 1] >= h) | (b[:, 2] <= 0) | (b[:, 3] <= 0))
        if outside.any():
            sid = table["sample_id"].iloc[rows[np.argmax(outside)]] if "sample_id" in table else rows[0]
            raise SampleTableError(f"{path}: {int(outside.sum())} box(es) lie entirely outside this {w}x{h} image "
                                   f"(e.g. sample {sid}); check the coordinates (0-based pixels, x along the width)")
        cut[rows] = pixels.region_boxes(b, h, w, spec.region)
        for r, patch in zip(rows, pixels.region_pixels(image8, b, spec.region)):
            crops[r] = pixels.resize_square(patch, size)
            std[r] = float(cv2.meanStdDev(patch)[1][0, 0])  # population std, like np.std; releases the GIL
        thumbs[u] = duplicates.thumbnail(image8)
        meta[u] = (h, w, digest)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(work, range(len(units))))
    crops.flush()
    np.save(folder / "thumbs.npy", thumbs)
    pd.DataFrame({"sample_id": table["sample_id"].to_numpy() if "sample_id" in table else np.arange(n),
                  "path": table["path"].to_numpy(), "cx0": cut[:, 0], "cy0": cut[:, 1], "cx1": cut[:, 2],
                  "cy1": cut[:, 3], "bf8_std": std}).to_csv(folder / "rows.csv", index=False)
    pd.DataFrame({"path": units["path"], "channel": units["channel"], "height": [m[0] for m in meta],
                  "width": [m[1] for m in meta], "image_hash": [m[2] for m in meta]}).to_csv(
        folder / "images.csv", index=False)


def build_store(table: pd.DataFrame, spec: PreprocessSpec, cache_dir: str | os.PathLike, verify: str = "none",
                loader: Loader | None = None, workers: int | None = None, listed_in: str = "the sample table",
                verbose: bool = True) -> CropStore:
    """Build (or verify and reuse) the store of ``table``'s samples; row i = table row i.

    A missing source file stops with one line naming it; a changed one is named and the store
    rebuilt. ``loader`` may serve 8-bit images from another cache made by ``pixels.load_source``.
    """
    if table.empty:
        raise SampleTableError(f"{listed_in}: no samples to store")
    units = _image_units(table)
    records = identity.identities(units["path"].unique().tolist(), verify, listed_in)
    slot = identity.cache_slot(cache_dir, PREFIX, _settings(table, spec), records)
    if slot.ready("crops.npy"):
        return CropStore.open(slot.folder)
    slot.notice(f"crop store {slot.folder.name}")
    slot.clear()
    start = time.perf_counter()
    with atomic_dir(slot.folder) as tmp:
        _fill(tmp, table, units, spec, loader or default_loader(spec), workers or min(8, os.cpu_count() or 1))
        slot.write_identity(tmp)
        (tmp / "spec.json").write_text(json.dumps(spec.pixel_dict(), indent=2))
    slot.remove_stale()
    seconds = time.perf_counter() - start
    if verbose:
        print(f"crop store built: {len(table):,} samples from {len(units):,} images in {seconds:.1f}s -> {slot.folder}")
    return CropStore.open(slot.folder, built=True, seconds=seconds)

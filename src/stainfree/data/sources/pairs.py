"""``pairs``: bright-field + fluorescence (PI or any dead-cell stain) images of the same fields, in any
naming, labelled like the JIMT-1 paper: sliding windows on the bright-field image, mean fluorescence
per window on the raw scale, empty windows removed, live/dead from a 2-component Gaussian mixture
(or fixed thresholds), the band between discarded.

Two layouts: a pattern per channel (``bf_pattern='*_BF.tif'``, ``fl_pattern='*_PI.tif'``: files are
paired by what the wildcards (or a regex's capture groups) match, relative to ``images``), or one
multi-page / OME TIFF per field (``pattern='*.tif'`` with ``bf_channel`` / ``fl_channel`` page indices).
The per-window statistics are cached (keyed by every file's identity, like the crop store).
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stainfree.data import identity, pixels
from stainfree.data.imageio import list_images
from stainfree.data.jimt import empty_filter as empty_filters
from stainfree.data.jimt import labels as pi_labels
from stainfree.data.jimt.tiling import window_means, window_origins, window_stds
from stainfree.data.samples import HINTS, SampleTableError, validate_samples
from stainfree.data.spec import EightBit
from stainfree.utils.atomic import atomic_dir

STATS_VERSION = 1


def _matcher(pattern: str) -> re.Pattern[str]:
    """A regex (if ``pattern`` has a capture group) or a glob whose wildcards become the pairing key."""
    if "(" in pattern:
        try:
            return re.compile(pattern)
        except re.error as err:
            raise SampleTableError(f"pattern '{pattern}' is not a valid regex ({err})") from err
    return re.compile("".join("(.*)" if c == "*" else "(.)" if c == "?" else re.escape(c) for c in pattern))


def _keyed(files: list[Path], root: Path, pattern: str) -> dict[tuple[str, ...], Path]:
    rx = _matcher(pattern)
    out: dict[tuple[str, ...], Path] = {}
    for f in files:
        rel = f.relative_to(root).as_posix()
        m = rx.fullmatch(rel) or rx.fullmatch(f.name)
        if m:
            out[m.groups() or (rel,)] = f
    return out


def find_pairs(images: Path, bf_pattern: str | None, fl_pattern: str | None, pattern: str | None,
               bf_channel: int | None, fl_channel: int | None, on_unpaired: str) -> pd.DataFrame:
    """(bf, fl, bf_channel, fl_channel) per field, sorted by the BF path; unpaired files: error or warn."""
    if not images.is_dir():
        raise SampleTableError(f"data.images={images}: folder not found; point it at the bright-field + fluorescence images")
    files = list_images(images)
    if bf_channel is not None or fl_channel is not None:
        if bf_channel is None or fl_channel is None:
            raise SampleTableError("one-file-per-field pairs need both data.bf_channel and data.fl_channel (page indices)")
        found = sorted(_keyed(files, images, pattern or "*.tif*").values())
        if not found:
            raise SampleTableError(f"data.images={images}: no file matches data.pattern='{pattern}'")
        return pd.DataFrame({"bf": found, "fl": found, "bf_channel": int(bf_channel), "fl_channel": int(fl_channel)})
    bf, fl = _keyed(files, images, bf_pattern or "*_BF.tif"), _keyed(files, images, fl_pattern or "*_PI.tif")
    if not bf:
        raise SampleTableError(f"data.images={images}: no file matches data.bf_pattern='{bf_pattern}'")
    lonely = sorted(str(bf[k].relative_to(images)) for k in set(bf) - set(fl)) + \
        sorted(str(fl[k].relative_to(images)) for k in set(fl) - set(bf))
    if lonely:
        msg = (f"{len(lonely)} file(s) under {images} have no partner channel: {', '.join(lonely[:5])}"
               f"{' (+more)' if len(lonely) > 5 else ''}; fix data.bf_pattern/data.fl_pattern or the names")
        if on_unpaired == "error":
            raise SampleTableError(msg + " (or set data.on_unpaired=warn to leave them out)")
        print(f"data: leaving out {msg}")
    keys = sorted(set(bf) & set(fl), key=lambda k: str(bf[k]))
    if not keys:
        raise SampleTableError(f"data.images={images}: no bright-field file has a fluorescence partner")
    return pd.DataFrame({"bf": [bf[k] for k in keys], "fl": [fl[k] for k in keys], "bf_channel": pd.NA,
                         "fl_channel": pd.NA})


def _pair_stats(row: Any, window: int, stride: int, eight: EightBit) -> pd.DataFrame:
    """Per-window raw fluorescence mean and the two emptiness statistics of one pair."""
    def ch(c: Any) -> str | int:
        return "mean" if pd.isna(c) else int(c)

    bf, fl = pixels.read_grey(row.bf, ch(row.bf_channel)), pixels.read_grey(row.fl, ch(row.fl_channel))
    if bf.shape != fl.shape:
        raise SampleTableError(f"{row.bf} is {bf.shape} but its fluorescence partner {row.fl} is {fl.shape}; "
                               "both channels must cover the same field")
    origins = window_origins(bf.shape[0], bf.shape[1], window, stride)
    return pd.DataFrame({"y": origins[:, 0], "x": origins[:, 1], "pi_mean": window_means(fl, origins, window),
                         "contrast": window_stds(empty_filters.contrast_image(bf), origins, window),
                         "bf8_std": window_stds(pixels.to_8bit(bf, eight), origins, window),
                         "image_height": bf.shape[0], "image_width": bf.shape[1]})


def window_stats(pairs: pd.DataFrame, window: int, stride: int, eight: EightBit, cache_dir: Path,
                 verify: str) -> pd.DataFrame:
    """Statistics of every window of every pair (``pair`` = row of ``pairs``), built once and cached."""
    files = list(dict.fromkeys([*map(str, pairs["bf"]), *map(str, pairs["fl"])]))
    settings = {"version": STATS_VERSION, "window": window, "stride": stride, "to_8bit": vars(eight),
                "channels": pairs[["bf_channel", "fl_channel"]].astype("string").fillna("").values.tolist()}
    slot = identity.cache_slot(cache_dir, "pairs", settings, identity.identities(files, verify, "data.images"))
    if not slot.ready("windows.csv"):
        slot.notice("pairs window statistics")
        slot.clear()
        with atomic_dir(slot.folder) as tmp:
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                parts = list(pool.map(lambda r: _pair_stats(r, window, stride, eight), pairs.itertuples()))
            pd.concat([p.assign(pair=i) for i, p in enumerate(parts)]).to_csv(tmp / "windows.csv", index=False)
            slot.write_identity(tmp)
        slot.remove_stale()
    return pd.read_csv(slot.folder / "windows.csv")


def _thresholds(stats: pd.DataFrame, pairs: pd.DataFrame, images: Path, cfg: dict[str, Any]) -> pi_labels.Thresholds:
    if cfg.get("method", "gmm") == "fixed":
        return pi_labels.fixed_thresholds(cfg.get("live_below"), cfg.get("dead_above"))
    usable = stats[~stats["empty"]]
    if cfg.get("reference"):
        rx = re.compile(str(cfg["reference"]))
        ref = [i for i, p in enumerate(pairs["bf"]) if rx.search(Path(p).relative_to(images).as_posix())]
        if not ref:
            raise SampleTableError(f"data.labels.reference='{cfg['reference']}' matches no bright-field file")
        usable = usable[usable["pair"].isin(ref)]
    return pi_labels.gmm_thresholds(usable["pi_mean"].to_numpy(), seed=int(cfg.get("seed", 0)),
                                    reference=cfg.get("reference"))


def read_pairs(images: str | os.PathLike, bf_pattern: str | None = "*_BF.tif", fl_pattern: str | None = "*_PI.tif",
               pattern: str | None = None, bf_channel: int | None = None, fl_channel: int | None = None,
               window: int = 224, stride: int | None = None, labels: dict | None = None,
               empty_filter: dict | None = None, on_unpaired: str = "error",
               cache_dir: str | os.PathLike = "data/cache/samples", verify: str = "none",
               to_8bit: dict | None = None, stretch_8bit: bool = False) -> pd.DataFrame:
    """Labelled windows of every bright-field image (``label`` live/dead, ``group`` = the field)."""
    images = Path(images).resolve()
    window, stride = int(window), int(stride or window)
    if on_unpaired not in ("error", "warn"):
        raise SampleTableError(f"data.on_unpaired='{on_unpaired}' is not one of ('error', 'warn')")
    filt = empty_filters.check_config(dict(empty_filter or {"method": "variance"}))
    if filt["method"] == "svm":
        raise SampleTableError("data.empty_filter.method=svm is offered by the JIMT-1 manifest route (data=jimt_notreat); "
                               "for pairs use variance (statistic contrast or bf8_std) or none")
    eight = EightBit(**{**(to_8bit or {}), "stretch_8bit": bool(stretch_8bit)})
    pairs = find_pairs(images, bf_pattern, fl_pattern, pattern, bf_channel, fl_channel, on_unpaired)
    stats = window_stats(pairs, window, stride, eight, Path(cache_dir), verify)
    stats["empty"] = (stats[filt["statistic"]] < filt["threshold"]) if filt["method"] == "variance" else False
    thr = _thresholds(stats, pairs, images, dict(labels or {}))
    target = pi_labels.assign_labels(stats["pi_mean"].to_numpy(), thr)
    target[stats["empty"].to_numpy(bool)] = pi_labels.AMBIGUOUS
    keep = stats[target >= 0].reset_index(drop=True)
    bf = pairs["bf"].astype(str).to_numpy()[keep["pair"]]
    rel = np.array([Path(p).relative_to(images).as_posix() for p in bf])
    table = pd.DataFrame({
        "path": bf, "label": np.array(pi_labels.CLASS_NAMES)[target[target >= 0]], "group": rel,
        "x0": keep["x"].astype(float), "y0": keep["y"].astype(float), "x1": (keep["x"] + window).astype(float),
        "y1": (keep["y"] + window).astype(float), "region_kind": "window",
        "sample_id": [f"{r}@{y},{x}" for r, y, x in zip(rel, keep["y"], keep["x"])],
        "channel": pairs["bf_channel"].to_numpy()[keep["pair"]], "fl_path": pairs["fl"].astype(str).to_numpy()[keep["pair"]],
        "y": keep["y"], "x": keep["x"], "pi_mean": keep["pi_mean"], "empty_score": keep[filt.get("statistic", "contrast")],
        "image_height": keep["image_height"], "image_width": keep["image_width"]})
    n_empty = int(stats["empty"].sum())
    print(f"pairs under {images}: {len(pairs)} fields, {len(stats):,} windows, {n_empty:,} empty, "
          f"{int((target < 0).sum()) - n_empty:,} ambiguous, {int((target == 0).sum()):,} live, "
          f"{int((target == 1).sum()):,} dead (live < {thr.live_below:.1f} <= ambiguous <= {thr.dead_above:.1f} < dead)")
    table.attrs[HINTS] = {"layout": {"kind": "windows", "window": window, "stride": stride}, "empty_filter": filt,
                          "pi_thresholds": {"live_below": thr.live_below, "dead_above": thr.dead_above},
                          "channel": None if bf_channel is None else int(bf_channel)}
    return validate_samples(table, source=f"data.images={images}", check_files=False)

"""One-off preprocessing of a JIMT-1 manifest into a cache the DataModule reads from.

Two cached stages, each built in a temp folder and renamed into place (atomic_dir):
1. ``<cache_dir>/frames-<what>-<data>/``: every BF frame as 8-bit (``pixels.load_source``'s rule) in
   ONE memory-mapped ``bf8.npy`` [n_frames, H, W], per-window raw PI means and 8-bit BF standard
   deviations, each frame's content hash and thumbnail (duplicates). ``what`` = manifest + resolved
   file paths + 8-bit conversion + window + stride; ``data`` = every BF/PI file's identity
   (``stainfree.data.identity``: verified on reuse, so other files never reuse these frames).
2. ``<cache_dir>/jimt-<key>/``: empty filter, PI thresholds, labels, duplicate groups and frame splits
   (``index.csv``), Table 1 (``summary.csv``/``summary.md``), ``pi_histogram.png``,
   ``thresholds.json``. Key = stage-1 folder + filter + labels + split + duplicate settings.
Changing only the labels or split therefore re-uses the (expensive) decoded frames.
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stainfree.data import duplicates, identity
from stainfree.data.imageio import ImageReadError, read_image
from stainfree.data.jimt import bitdepth, empty_filter, labels, splits
from stainfree.data.jimt.manifest import load_manifest, manifest_digest
from stainfree.data.jimt.report import pi_histogram, table1, table1_markdown
from stainfree.data.jimt.tiling import window_means, window_origins, window_stds
from stainfree.data.pixels import resize_square
from stainfree.data.splits import check_leakage
from stainfree.utils.atomic import atomic_dir
from stainfree.utils.errors import UserError

CACHE_VERSION = 2


class FrameError(UserError):
    """A frame listed in the manifest is missing, unreadable or inconsistent; names the file(s)."""


def normalise_config(bf_to8bit: dict | None = None, window: int = 224, stride: int = 224,
                     empty_filter_cfg: dict | None = None, labels_cfg: dict | None = None,
                     split: dict | None = None, duplicates_cfg: dict | None = None) -> dict[str, Any]:
    """Validate all preprocessing settings at once and return the canonical dict used for hashing."""
    window, stride = int(window), int(stride)
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive, got window={window}, stride={stride}")
    lab = dict(labels_cfg or {})
    method = lab.get("method", "gmm")
    if method not in ("gmm", "fixed"):
        raise ValueError(f"labels.method='{method}' is not one of ('gmm', 'fixed')")
    if method == "gmm":
        lab_out = {"method": "gmm", "reference": str(lab.get("reference", "notreat")),
                   "seed": int(lab.get("seed", 0))}
    else:
        t = labels.fixed_thresholds(lab.get("live_below"), lab.get("dead_above"))
        lab_out = {"method": "fixed", "live_below": t.live_below, "dead_above": t.dead_above}
    return {
        "version": CACHE_VERSION,
        "bf_to8bit": bitdepth.check_config(dict(bf_to8bit or {})),
        "window": window,
        "stride": stride,
        "empty_filter": empty_filter.check_config(dict(empty_filter_cfg or {})),
        "labels": lab_out,
        "split": splits.check_config(dict(split or {})),
        "duplicates": vars(duplicates.DuplicateConfig.from_config(duplicates_cfg)),
    }


def frames_slot(frames: pd.DataFrame, manifest: str | os.PathLike, cfg: dict[str, Any],
                cache_dir: str | os.PathLike, verify: str = "none") -> identity.CacheSlot:
    """Stage-1 folder for these frames' files (identity verified: a missing file stops the run)."""
    settings = {"manifest": manifest_digest(manifest), "version": cfg["version"], "bf_to8bit": cfg["bf_to8bit"],
                "window": cfg["window"], "stride": cfg["stride"]}
    files = list(dict.fromkeys([*frames["bf_abs"], *frames["pi_abs"]]))
    try:
        records = identity.identities(files, verify, listed_in=f"the manifest {manifest}")
    except identity.MissingSourceError as err:
        gone = str(err).split(": no such file")[0]
        frame = frames.loc[(frames["bf_abs"] == gone) | (frames["pi_abs"] == gone), "frame_id"].iloc[0]
        raise FrameError(f"frame '{frame}' listed in {manifest}: {gone}: no such file; restore it or remove the "
                         "frame from the manifest") from None
    return identity.cache_slot(cache_dir, "frames", settings, records)


def index_key(frames_dir: Path, cfg: dict[str, Any]) -> str:
    """Stage-2 key: the stage-1 folder + everything that changes labels and splits."""
    rest = {"frames": frames_dir.name, "empty_filter": cfg["empty_filter"], "labels": cfg["labels"],
            "split": cfg["split"], "duplicates": cfg["duplicates"]}
    if cfg["empty_filter"]["method"] == "svm":
        rest["examples"] = empty_filter.examples_digest(cfg["empty_filter"]["examples_dir"])
    return identity.digest(rest)


def _read_pair(row: pd.Series, manifest: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        bf = read_image(row.bf_abs)
        pi = read_image(row.pi_abs)
    except ImageReadError as err:
        raise FrameError(f"frame '{row.frame_id}' listed in {manifest}: {err}") from err
    if bf.shape != pi.shape:
        raise FrameError(f"frame '{row.frame_id}' in {manifest}: BF {row.bf_abs} is {bf.shape} but "
                         f"PI {row.pi_abs} is {pi.shape}; both channels must cover the same field")
    return bf, pi


def _build_frames(frames: pd.DataFrame, manifest: Path, cfg: dict[str, Any], folder: Path,
                  workers: int) -> None:
    """Stage 1: decode every frame once into bf8.npy and per-window statistics."""
    first_bf, _ = _read_pair(frames.iloc[0], manifest)
    shape = first_bf.shape
    win, stride = cfg["window"], cfg["stride"]
    origins = window_origins(shape[0], shape[1], win, stride)
    bf8 = np.lib.format.open_memmap(folder / "bf8.npy", mode="w+", dtype=np.uint8,
                                    shape=(len(frames), *shape))

    thumbs = np.zeros((len(frames), duplicates.THUMB, duplicates.THUMB), np.uint8)

    def work(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float], str]:
        row = frames.iloc[i]
        bf, pi = _read_pair(row, manifest)
        if bf.shape != shape:
            raise FrameError(f"frame '{row.frame_id}' in {manifest}: {row.bf_abs} is {bf.shape}, but "
                             f"the first frame is {shape}; all frames must share one size")
        img8, lohi = bitdepth.to_uint8(bf, cfg["bf_to8bit"])
        bf8[i] = img8
        thumbs[i] = duplicates.thumbnail(img8)
        return (window_means(pi, origins, win), window_stds(img8, origins, win),
                window_stds(empty_filter.contrast_image(bf), origins, win), lohi, duplicates.image_hash(bf))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(work, range(len(frames))))
    bf8.flush()
    np.save(folder / "thumbs.npy", thumbs)
    n_win = len(origins)
    windows = pd.DataFrame({
        "frame_idx": np.repeat(np.arange(len(frames)), n_win),
        "y": np.tile(origins[:, 0], len(frames)), "x": np.tile(origins[:, 1], len(frames)),
        "pi_mean": np.concatenate([r[0] for r in results]),
        "bf8_std": np.concatenate([r[1] for r in results]),
        "contrast": np.concatenate([r[2] for r in results]),
    })
    windows.to_csv(folder / "windows.csv", index=False)
    meta = frames[["frame_id", "dataset", "bf_path", "pi_path", "bf_abs"]].copy()
    meta["bf_lo"] = [r[3][0] for r in results]
    meta["bf_hi"] = [r[3][1] for r in results]
    meta["bf_hash"] = [r[4] for r in results]
    meta.to_csv(folder / "frames.csv", index_label="frame_idx")
    (folder / "frames.json").write_text(json.dumps(
        {"shape": list(shape), "window": win, "stride": stride, "bf_to8bit": cfg["bf_to8bit"],
         "manifest": str(manifest)}, indent=2))


def _apply_empty_filter(windows: pd.DataFrame, frames_dir: Path, cfg: dict[str, Any],
                        out: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Empty flags and scores for every window, plus a report dict (and svm.joblib for ``svm``)."""
    method = cfg["method"]
    n = len(windows)
    if method == "none":
        return np.zeros(n, bool), np.full(n, np.nan), {"method": "none"}
    if method == "variance":
        stat = windows[cfg["statistic"]].to_numpy()
        return stat < cfg["threshold"], stat, {"method": "variance", "statistic": cfg["statistic"],
                                               "threshold": cfg["threshold"]}
    import joblib

    images, y = empty_filter.load_examples(cfg["examples_dir"])
    net = empty_filter.build_feature_backbone(cfg)
    size, bs = cfg["feature_size"], cfg["batch_size"]
    ex_feats = empty_filter.extract_features(
        net, empty_filter.batched(lambda i: resize_square(images[i], size), len(images), bs), size)
    svm = empty_filter.fit_svm(ex_feats, y, C=cfg["C"])
    bf8 = np.load(frames_dir / "bf8.npy", mmap_mode="r")
    win = int(json.loads((frames_dir / "frames.json").read_text())["window"])
    fi, ys, xs = (windows[c].to_numpy() for c in ("frame_idx", "y", "x"))
    feats = empty_filter.extract_features(
        net, empty_filter.batched(lambda i: bf8[fi[i], ys[i]:ys[i] + win, xs[i]:xs[i] + win], n, bs), size)
    score = svm.model.decision_function(feats)
    joblib.dump(svm.model, out / "svm.joblib")
    report = {"method": "svm", "cv_f1": svm.cv_f1, "n_empty_examples": svm.n_empty,
              "n_nonempty_examples": svm.n_nonempty, "backbone": cfg["backbone"],
              "pretrained": cfg["pretrained"], "svm_path": "svm.joblib"}
    print(f"empty-filter SVM: cross-validated F1 (empty) = {svm.cv_f1:.3f} "
          f"on {svm.n_empty} empty / {svm.n_nonempty} non-empty examples")
    return svm.model.predict(feats) == 1, score, report


def _build_index(frames_dir: Path, cfg: dict[str, Any], out: Path) -> pd.DataFrame:
    """Stage 2: empty filter, thresholds, labels, splits; writes index and reports into ``out``."""
    frames = pd.read_csv(frames_dir / "frames.csv", dtype={"frame_id": str, "dataset": str})
    windows = pd.read_csv(frames_dir / "windows.csv")
    windows.insert(0, "frame_id", frames["frame_id"].to_numpy()[windows["frame_idx"]])
    windows.insert(1, "dataset", frames["dataset"].to_numpy()[windows["frame_idx"]])
    empty, score, filt_report = _apply_empty_filter(windows, frames_dir, cfg["empty_filter"], out)
    windows["empty"] = empty
    windows["empty_score"] = score

    lab = cfg["labels"]
    if lab["method"] == "gmm":
        ref = lab["reference"]
        if ref not in set(frames["dataset"]):
            raise ValueError(f"labels.reference='{ref}' is not a dataset in the manifest "
                             f"(found {sorted(set(frames['dataset']))}); set labels.reference to one of them")
        values = windows.loc[(windows["dataset"] == ref) & ~windows["empty"], "pi_mean"].to_numpy()
        thr = labels.gmm_thresholds(values, seed=lab["seed"], reference=ref)
    else:
        thr = labels.fixed_thresholds(lab["live_below"], lab["dead_above"])
    target = labels.assign_labels(windows["pi_mean"].to_numpy(), thr)
    target[windows["empty"].to_numpy()] = labels.AMBIGUOUS
    windows["target"] = target
    windows["label"] = np.where(windows["empty"], "empty",
                                np.where(target == labels.LIVE, "live",
                                         np.where(target == labels.DEAD, "dead", "ambiguous")))
    group_of, copies = _frame_groups(frames, frames_dir, cfg["duplicates"])
    split_of = splits.split_frames(frames["frame_id"], frames["dataset"], cfg["split"], group_of)
    windows["group"] = windows["frame_id"].map(group_of)
    windows["split"] = windows["frame_id"].map(split_of)
    splits.check_no_leak(windows)
    check_leakage(windows.assign(image_hash=frames["bf_hash"].to_numpy()[windows["frame_idx"]]))
    (out / "duplicates.json").write_text(json.dumps(copies, indent=2))

    windows.to_csv(out / "index.csv", index=False)
    (out / "thresholds.json").write_text(json.dumps(thr.to_dict(), indent=2))
    (out / "empty_filter.json").write_text(json.dumps(filt_report, indent=2))
    summary = table1(windows, frames)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(table1_markdown(summary))
    pi_histogram(windows, thr, out / "pi_histogram.png")
    (out / "config.json").write_text(json.dumps({**cfg, "frames_dir": frames_dir.name}, indent=2))
    return windows


def _frame_groups(frames: pd.DataFrame, frames_dir: Path, cfg: dict[str, Any]) -> tuple[dict[str, str], dict]:
    """frame id -> group (frames showing one image, exactly or, if asked, nearly, share a group)."""
    ids = frames["frame_id"].tolist()
    exact = duplicates.exact_clusters(frames["bf_hash"].tolist())
    if exact and cfg["exact"] == "refuse":
        named = [[f"{ids[i]} ({frames['bf_path'].iloc[i]})" for i in c] for c in exact]
        raise duplicates.DuplicateImagesError(
            f"{sum(len(c) for c in exact)} manifest frames show identical bright-field images "
            f"({duplicates.describe(named)}); remove the copies or set data.duplicates.exact=group")
    near = duplicates.near_clusters(np.load(frames_dir / "thumbs.npy"), cfg["near_threshold"]) if cfg["near"] else []
    clusters = duplicates.join(len(ids), exact + near)
    group_of = {f: f for f in ids}
    for c in clusters:
        for i in c:
            group_of[ids[i]] = ids[min(c)]
    copies = {"exact": [[ids[i] for i in c] for c in exact], "near": [[ids[i] for i in c] for c in near],
              "near_threshold": cfg["near_threshold"] if cfg["near"] else None}
    return group_of, copies


def duplicate_notice(copies: dict) -> str | None:
    """One line about frames grouped as copies (None when there are none and near-grouping is off)."""
    parts = []
    if copies.get("exact"):
        n = sum(len(c) - 1 for c in copies["exact"])
        parts.append(f"{n} frame(s) show the same bright-field image as another frame "
                     f"({duplicates.describe(copies['exact'])}); grouped together so they stay in one split "
                     "(data.duplicates.exact=refuse stops instead)")
    if copies.get("near_threshold") is not None:
        parts.append(f"near-duplicate grouping (dihedral correlation >= {copies['near_threshold']}) merged "
                     f"{sum(len(c) - 1 for c in copies['near'])} frame(s) into {len(copies['near'])} cluster(s)"
                     + (f" ({duplicates.describe(copies['near'])})" if copies["near"] else ""))
    return "; ".join(parts) or None


@dataclass
class Prepared:
    """Paths of a finished cache; everything the DataModule needs to load it."""

    folder: Path
    frames_dir: Path
    built: bool  # False when an existing cache was reused

    @property
    def bf8_path(self) -> Path:
        return self.frames_dir / "bf8.npy"

    def index(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "index.csv", dtype={"frame_id": str, "dataset": str})

    def summary(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "summary.csv", dtype={"dataset": str})

    def thresholds(self) -> dict[str, Any]:
        return json.loads((self.folder / "thresholds.json").read_text())

    def empty_filter_report(self) -> dict[str, Any]:
        return json.loads((self.folder / "empty_filter.json").read_text())

    def frames(self) -> pd.DataFrame:
        return pd.read_csv(self.frames_dir / "frames.csv", dtype={"frame_id": str, "dataset": str, "bf_hash": str})

    def duplicates(self) -> dict:
        path = self.folder / "duplicates.json"
        return json.loads(path.read_text()) if path.is_file() else {}


def _drop_index_folders(cache_dir: Path, frames_names: set[str]) -> None:
    """Remove the stage-2 folders made from the named (stale or invalid) frames folders."""
    for folder in Path(cache_dir).glob("jimt-*"):
        try:
            made_from = json.loads((folder / "config.json").read_text()).get("frames_dir")
        except (OSError, ValueError):
            continue
        if made_from in frames_names:
            shutil.rmtree(folder, ignore_errors=True)


def prepare(manifest: str | os.PathLike, cache_dir: str | os.PathLike, cfg: dict[str, Any],
            workers: int | None = None, verbose: bool = True, verify: str = "none") -> Prepared:
    """Build (or verify and reuse) the cache for ``manifest`` under ``cache_dir``; ``cfg`` from normalise_config.

    Every BF/PI file's identity is checked first: a missing file stops the run naming it, a changed
    one is named and its frames rebuilt (``stainfree.data.identity``).
    """
    manifest = Path(manifest)
    frames = load_manifest(manifest)
    cache_dir = Path(cache_dir)
    slot = frames_slot(frames, manifest, cfg, cache_dir, verify)
    built = False
    if not slot.ready("bf8.npy"):
        slot.notice(f"JIMT-1 frames cache for {manifest}")
        _drop_index_folders(cache_dir, {p.name for p in slot.stale} | ({slot.folder.name} if slot.invalid else set()))
        slot.clear()
        with atomic_dir(slot.folder) as tmp:
            _build_frames(frames, manifest, cfg, tmp, workers or min(8, os.cpu_count() or 1))
            slot.write_identity(tmp)
        slot.remove_stale()
        built = True
    folder = cache_dir / f"jimt-{index_key(slot.folder, cfg)}"
    if not (folder / "index.csv").is_file():
        with atomic_dir(folder) as tmp:
            _build_index(slot.folder, cfg, tmp)
        built = True
    prepared = Prepared(folder=folder, frames_dir=slot.folder, built=built)
    notice = duplicate_notice(prepared.duplicates())
    if verbose:
        state = "built" if built else "reused"
        print(f"\nJIMT-1 patch cache {state}: {prepared.folder}\n{(prepared.folder / 'summary.md').read_text()}")
        if notice:
            print(f"data: {notice}")
    return prepared

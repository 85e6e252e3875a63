"""Train/val/test split by raw frame: patches of one frame overlap and share cells, so a
frame in two splits would leak test content into training."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


class SplitLeakError(AssertionError):
    """A frame id ended up in more than one split."""


def check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Normalise ``split`` config: fractions (train, val, test) summing to 1, and a seed."""
    fr = [float(cfg.get(k, d)) for k, d in (("train", 0.8), ("val", 0.1), ("test", 0.1))]
    if min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"split fractions train/val/test must be >= 0 and sum to 1, got {fr}")
    return {"train": fr[0], "val": fr[1], "test": fr[2], "seed": int(cfg.get("seed", 0))}


def split_frames(frame_ids: Sequence[str], datasets: Sequence[str], cfg: dict[str, Any],
                 groups: Mapping[str, str] | None = None) -> dict[str, str]:
    """Map frame id -> split, seeded; fractions are applied within each dataset.

    ``groups`` (frame id -> group, e.g. frames showing one image) makes whole groups the unit, so
    copies never straddle splits; a group belongs to the dataset of its first frame. Every
    non-zero split gets at least one unit when the dataset has enough, so tiny (test/demo) sets
    still have a validation and test set.
    """
    frame_ids = list(frame_ids)
    groups = dict(groups or {})
    table = pd.DataFrame({"frame_id": frame_ids, "dataset": list(datasets)})
    table["group"] = [groups.get(f, f) for f in frame_ids]
    home = table.sort_values("frame_id").drop_duplicates("group").set_index("group")["dataset"]
    unit_split: dict[str, str] = {}
    for k, dataset in enumerate(sorted(table["dataset"].unique())):
        ids = sorted(home.index[home == dataset])
        rng = np.random.default_rng([cfg["seed"], k])
        ids = [ids[i] for i in rng.permutation(len(ids))]
        n = len(ids)
        n_val = int(round(cfg["val"] * n))
        n_test = int(round(cfg["test"] * n))
        if n >= 3:
            n_val = max(n_val, 1 if cfg["val"] > 0 else 0)
            n_test = max(n_test, 1 if cfg["test"] > 0 else 0)
        n_train = n - n_val - n_test
        for i, unit in enumerate(ids):
            unit_split[unit] = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
    out = {f: unit_split[g] for f, g in zip(table["frame_id"], table["group"])}
    check_no_leak(pd.DataFrame({"frame_id": list(out), "split": list(out.values())}))
    return out


def check_no_leak(index: pd.DataFrame) -> None:
    """Raise if any frame id appears in more than one split (the paper's rule)."""
    per_frame = index.groupby("frame_id")["split"].nunique()
    bad = per_frame[per_frame > 1].index.tolist()
    if bad:
        raise SplitLeakError(f"frame(s) {bad[:5]} appear in more than one split; patches of one frame "
                             "must stay together (delete the cache folder and prepare again)")

"""Train/val/test splits by WHOLE FIELD, so tiles of one image never land in two splits.

Modes (first one set wins; the report says which):
  holdout_cell_line: test = every image of that line (leave-one-cell-line-out), rest 70/30.
  within_replicate:  only that replicate; train/val/test drawn from it by image. The real U2OS
                     set confounds treatment with replicate, so this is the honest comparison.
  test_replicate:    test = one whole independent experiment ('last' = highest N), rest 70/30.
  none of them:      train/val/test drawn from all images by image.
Every draw is stratified by class and seeded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from stainfree.utils.errors import UserError

SPLITS = ("train", "val", "test")


class LeakageError(RuntimeError):
    """Tiles of one field ended up in more than one split."""


@dataclass(frozen=True)
class SplitConfig:
    """How to split; see the module docstring."""

    test_replicate: str | None = "last"
    holdout_cell_line: str | None = None
    within_replicate: str | None = None
    val_fraction: float = 0.3
    test_fraction: float = 0.2
    seed: int = 0

    @property
    def mode(self) -> str:
        if self.holdout_cell_line is not None:
            return f"leave-one-cell-line-out (test = {self.holdout_cell_line})"
        if self.within_replicate is not None:
            return f"within replicate {self.within_replicate}"
        if self.test_replicate is not None:
            return f"held-out replicate (test = {self.test_replicate})"
        return "random by image"


def _norm_replicate(value: str | int) -> str:
    """'N3', 'n3', '3' and 3 all mean replicate N3."""
    m = re.fullmatch(r"[Nn]?(\d+)", str(value).strip())
    if not m:
        raise UserError(f"replicate '{value}' is not understood; write it like N3")
    return f"N{int(m.group(1))}"


def _counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_val, n_test) images of one class: every split gets one when there are enough, train never empty."""
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if test_fraction > 0 and n >= 2:
        n_test = max(n_test, 1)
    if val_fraction > 0 and n - n_test >= 2:
        n_val = max(n_val, 1)
    while n_val + n_test > n - 1 and n_val + n_test > 0:  # keep at least one training image
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def _draw(images: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """Stratified (by target) random split of image rows into train/val[/test]."""
    split = pd.Series("train", index=images.index, dtype=object)
    rng = np.random.default_rng(seed)
    for target in sorted(images["target"].unique()):
        idx = images.index[images["target"] == target].to_numpy()
        idx = idx[rng.permutation(len(idx))]
        n_val, n_test = _counts(len(idx), val_fraction, test_fraction)
        split[idx[:n_test]] = "test"
        split[idx[n_test : n_test + n_val]] = "val"
    return split


def assign_splits(images: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """Add a ``split`` column to an image table (columns target, cell_line, replicate); may drop rows (within_replicate)."""
    if cfg.holdout_cell_line is not None and cfg.within_replicate is not None:
        raise UserError("set only one of data.holdout_cell_line and data.within_replicate")
    for name, frac in (("val_fraction", cfg.val_fraction), ("test_fraction", cfg.test_fraction)):
        if not 0 <= frac < 1:
            raise UserError(f"data.{name}={frac} must be in [0, 1)")
    images = images.copy()
    reps = images["replicate"]
    if cfg.holdout_cell_line is not None:
        lines = sorted(images["cell_line"].dropna().unique())
        if cfg.holdout_cell_line not in lines:
            raise UserError(f"data.holdout_cell_line={cfg.holdout_cell_line} is not in the data; lines found: {lines}")
        test = images["cell_line"] == cfg.holdout_cell_line
        rest = images[~test]
        images["split"] = "test"
        images.loc[rest.index, "split"] = _draw(rest, cfg.val_fraction, 0.0, cfg.seed)
        return images
    if cfg.within_replicate is not None or cfg.test_replicate is not None:
        if reps.isna().any():
            bad = list(images.loc[reps.isna(), "image_id"][:5])
            raise UserError(f"{int(reps.isna().sum())} image(s) have no replicate token (e.g. {bad}); rename them, "
                             "fix data.naming.replicate_regex, or set data.test_replicate=null")
        found = sorted(reps.unique(), key=lambda r: int(r[1:]))
    if cfg.within_replicate is not None:
        rep = _norm_replicate(cfg.within_replicate)
        if rep not in found:
            raise UserError(f"data.within_replicate={cfg.within_replicate} is not in the data; replicates: {found}")
        images = images[reps == rep].copy()
        images["split"] = _draw(images, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        return images
    if cfg.test_replicate is not None:
        rep = found[-1] if str(cfg.test_replicate).lower() == "last" else _norm_replicate(cfg.test_replicate)
        images.attrs["split_mode"] = f"held-out replicate (test = {rep})"
        if rep not in found:
            raise UserError(f"data.test_replicate={cfg.test_replicate} is not in the data; replicates: {found}")
        if len(found) < 2:
            raise UserError(f"only replicate {rep} is present, so none is left to train on; set "
                             "data.test_replicate=null or use data.within_replicate")
        test = reps == rep
        rest = images[~test]
        images["split"] = "test"
        images.loc[rest.index, "split"] = _draw(rest, cfg.val_fraction, 0.0, cfg.seed)
        return images
    images["split"] = _draw(images, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    return images


def check_no_leakage(table: pd.DataFrame, group: str = "image_id") -> None:
    """Raise ``LeakageError`` naming the fields whose tiles sit in more than one split."""
    n_splits = table.groupby(group)["split"].nunique()
    bad = list(n_splits[n_splits > 1].index)
    if bad:
        raise LeakageError(f"{len(bad)} image(s) have tiles in several splits, e.g. {bad[:5]}; "
                           "splits must be drawn per image (this is a bug in the split code, please report it)")


def split_report(table: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Tiles and images per split x class x replicate x cell line (the table printed and saved at setup)."""
    t = table.assign(**{"class": [class_names[i] for i in table["target"]]})
    t["replicate"] = t["replicate"].fillna("?")
    t["cell_line"] = t["cell_line"].fillna("?")
    report = (t.groupby(["split", "class", "replicate", "cell_line"], observed=True)
              .agg(tiles=("image_id", "size"), images=("image_id", "nunique")).reset_index())
    order = {s: i for i, s in enumerate(SPLITS)}
    return report.sort_values(["split", "class", "replicate", "cell_line"],
                              key=lambda c: c.map(order) if c.name == "split" else c).reset_index(drop=True)


def split_summary(table: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Tiles per split (rows) and class (columns, fixed order), with totals: the Table-1 view."""
    counts = pd.crosstab(table["split"], table["target"]).reindex(index=list(SPLITS), columns=range(len(class_names)),
                                                                  fill_value=0)
    counts.columns = list(class_names)
    counts.index.name = "split"
    counts["total"] = counts.sum(axis=1)
    return counts

"""Group-aware train/val/test splits for every source, the leakage check and the pre-flight class check.

A ``group`` (field, frame, well, duplicate cluster) never spans two splits. Groups are drawn per
class (a group's class = its majority label), seeded. An explicit ``split`` column is honoured and
the remaining groups are split among the rest. Modes (``data.split``): fractions
``train/val/test``; ``n_folds`` + ``fold`` (group k-fold: fold k = test, val drawn from the rest);
``leave_out`` (test = the group with that value: leave-one-group-out as a multirun over values).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from stainfree.utils.errors import UserError

SPLITS = ("train", "val", "test")


class SplitError(UserError):
    """The split settings cannot be applied to this data; the message says which and the fix."""


class LeakageError(UserError):
    """One group (or one image's content) sits in two splits; the message names it."""


class MissingClassError(UserError):
    """A split lacks a class: its metrics would be meaningless (e.g. AUROC NaN)."""


@dataclass(frozen=True)
class SplitConfig:
    """``data.split`` (see the module docstring)."""

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    group_regex: str | None = None
    n_folds: int | None = None
    fold: int | None = None
    leave_out: str | None = None

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> "SplitConfig":
        cfg = {k: v for k, v in dict(cfg or {}).items()}
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(cfg) - set(allowed))
        if unknown:
            raise SplitError(f"data.split: unknown key(s) {unknown}; allowed: {allowed}")
        out = cls(**{k: v for k, v in cfg.items() if v is not None or k in ("group_regex", "n_folds", "fold",
                                                                              "leave_out")})
        out.check()
        return out

    def check(self) -> None:
        fr = (float(self.train), float(self.val), float(self.test))
        if min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
            raise SplitError(f"data.split fractions train/val/test must be >= 0 and sum to 1, got {list(fr)}")
        if self.fold is not None and self.n_folds is None:
            raise SplitError("data.split.fold needs data.split.n_folds (group k-fold), e.g. n_folds=5 fold=0")
        if self.n_folds is not None:
            if int(self.n_folds) < 2:
                raise SplitError(f"data.split.n_folds={self.n_folds} must be >= 2")
            if self.fold is None or not 0 <= int(self.fold) < int(self.n_folds):
                raise SplitError(f"data.split.fold={self.fold} must be in 0..{int(self.n_folds) - 1}; "
                                 f"sweep it with -m data.split.fold={','.join(map(str, range(int(self.n_folds))))}")
            if self.leave_out is not None:
                raise SplitError("set only one of data.split.n_folds and data.split.leave_out")
        if self.group_regex is not None:
            try:
                groups = re.compile(self.group_regex).groups
            except re.error as err:
                raise SplitError(f"data.split.group_regex='{self.group_regex}' is not a valid regex ({err})") from err
            if groups != 1:
                raise SplitError(f"data.split.group_regex='{self.group_regex}' needs exactly one capture group, "
                                 "e.g. '^(plate\\d+_[A-H]\\d+)_' for plate + well")

    @property
    def required(self) -> tuple[str, ...]:
        """Splits that must hold data (a zero fraction asks for an empty split)."""
        if self.n_folds is not None or self.leave_out is not None:
            return SPLITS if float(self.val) > 0 else ("train", "test")
        return tuple(s for s in SPLITS if float(getattr(self, s)) > 0)


def groups_from_names(table: pd.DataFrame, regex: str) -> pd.Series:
    """``group`` from the file name by ``regex``'s capture group; a name it does not match is an error."""
    pattern = re.compile(regex)
    out, bad = [], []
    for path in table["path"]:
        m = pattern.search(Path(path).name)
        (out.append(m.group(1)) if m else (out.append(""), bad.append(Path(path).name)))
    if bad:
        raise SplitError(f"data.split.group_regex='{regex}' matches no group in {len(bad)} file name(s), e.g. "
                         f"{', '.join(sorted(set(bad))[:3])}; fix the regex or rename the files")
    return pd.Series(out, index=table.index, dtype=str)


def group_classes(table: pd.DataFrame) -> pd.Series:
    """Majority label of every group (ties: the first label in sorted order)."""
    counts = table.groupby(["group", "label"]).size().reset_index(name="n")
    counts = counts.sort_values(["group", "n", "label"], ascending=[True, False, True])
    return counts.drop_duplicates("group").set_index("group")["label"]


def _counts(n: int, val: float, test: float) -> tuple[int, int]:
    """(n_val, n_test) groups of one class: each non-zero split gets one when possible, train keeps one."""
    n_test, n_val = int(round(n * test)), int(round(n * val))
    if test > 0 and n >= 2:
        n_test = max(n_test, 1)
    if val > 0 and n - n_test >= 2:
        n_val = max(n_val, 1)
    while n_val + n_test > n - 1 and n_val + n_test > 0:
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def _draw(by_class: dict[str, list[str]], val: float, test: float, rng: np.random.Generator) -> dict[str, str]:
    out: dict[str, str] = {}
    for label in sorted(by_class):
        groups = sorted(by_class[label])
        groups = [groups[i] for i in rng.permutation(len(groups))]
        n_val, n_test = _counts(len(groups), val, test)
        for i, g in enumerate(groups):
            out[g] = "test" if i < n_test else ("val" if i < n_test + n_val else "train")
    return out


def _by_class(classes: pd.Series) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for group, label in classes.items():
        out.setdefault(label, []).append(group)
    return out


def split_groups(classes: pd.Series, cfg: SplitConfig) -> dict[str, str]:
    """group -> split for groups with a class (``group_classes``), following ``cfg``'s mode."""
    rng = np.random.default_rng(int(cfg.seed))
    val_share = float(cfg.val) / max(float(cfg.train) + float(cfg.val), 1e-12)
    if cfg.leave_out is not None:
        held = str(cfg.leave_out)
        if held not in classes.index:
            raise SplitError(f"data.split.leave_out={held} is not a group of the data; groups are e.g. "
                             f"{', '.join(sorted(map(str, classes.index))[:5])}")
        rest = _draw(_by_class(classes.drop(held)), val_share, 0.0, rng)
        return {**rest, held: "test"}
    if cfg.n_folds is not None:
        folds: dict[str, int] = {}
        for label, groups in sorted(_by_class(classes).items()):
            groups = sorted(groups)
            for k, i in enumerate(rng.permutation(len(groups))):
                folds[groups[i]] = k % int(cfg.n_folds)
        test = [g for g, f in folds.items() if f == int(cfg.fold)]
        if not test:
            raise SplitError(f"fold {cfg.fold} of {cfg.n_folds} holds no group (only {len(folds)} groups); "
                             "lower data.split.n_folds")
        rest = _draw(_by_class(classes.drop(test)), val_share, 0.0, rng)
        return {**rest, **{g: "test" for g in test}}
    return _draw(_by_class(classes), float(cfg.val), float(cfg.test), rng)


def assign_splits(table: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """Fill the empty ``split`` cells by group (explicit splits kept; a group with two splits is refused)."""
    t = table.copy()
    if "split" not in t.columns:
        t["split"] = ""
    preset = t[t["split"] != ""]
    per_group = preset.groupby("group")["split"].unique()
    mixed = [g for g, s in per_group.items() if len(s) > 1]
    if mixed:
        raise LeakageError(f"the table's split column puts group(s) {', '.join(map(str, mixed[:5]))} in several "
                           "splits; give all samples of a group one split")
    fixed = {g: s[0] for g, s in per_group.items()}
    t.loc[t["group"].isin(list(fixed)), "split"] = t["group"].map(fixed)
    free = t[t["split"] == ""]
    if len(free):
        drawn = split_groups(group_classes(free), cfg)
        t.loc[free.index, "split"] = free["group"].map(drawn)
    return t


def check_leakage(table: pd.DataFrame, keys: Sequence[str] = ("group", "image_hash")) -> None:
    """Stop when a group, or an image's content, appears in two splits (train-val, train-test, val-test)."""
    for key in keys:
        if key not in table.columns:
            continue
        used = table[table["split"].isin(SPLITS)]
        per = used.groupby(key)["split"].unique()
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = [k for k, s in per.items() if a in s and b in s]
            if both:
                what = "group(s)" if key == "group" else "image(s) with identical content"
                raise LeakageError(f"{len(both)} {what} in both {a} and {b} (e.g. {', '.join(map(str, both[:3]))}); "
                                   "samples of one group/image must stay in one split: fix the table's split "
                                   "or group column (or data.duplicates)")


def check_two_classes(class_names: Sequence[str], hint: str = "") -> None:
    """Pre-flight: one class cannot be classified (it trained to bal_acc 1.0 with AUROC NaN, issue 8)."""
    if len(class_names) < 2:
        raise MissingClassError(f"the data has {len(class_names)} class(es) {list(class_names)}: a classifier "
                                "needs at least two; add the other class's images or annotations (or fix "
                                f"data.class_map if it merged them){hint}")


def check_every_class(table: pd.DataFrame, class_names: Sequence[str], required: Sequence[str] = SPLITS,
                      hint: str = "") -> None:
    """Pre-flight: every required split holds every class, else one line naming split, class and fix."""
    for split in required:
        have = set(table.loc[table["split"] == split, "label"])
        if not have:
            raise MissingClassError(f"the {split} split is empty; add data (more groups) or change the split "
                                    f"settings{hint}")
        missing = [c for c in class_names if c not in have]
        if missing:
            raise MissingClassError(f"the {split} split has no '{missing[0]}' samples (classes {list(class_names)}"
                                    f", {split} has {sorted(have)}); add images of that class, give it more groups, "
                                    f"or change the split settings{hint}")


def split_report(table: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Groups and samples per split x class, in split then class order (printed and saved at setup)."""
    t = table[table["split"].isin(SPLITS)]
    report = (t.groupby(["split", "label"]).agg(groups=("group", "nunique"), samples=("group", "size"))
              .reset_index().rename(columns={"label": "class"}))
    order_s = {s: i for i, s in enumerate(SPLITS)}
    order_c = {c: i for i, c in enumerate(class_names)}
    report = report.assign(_s=report["split"].map(order_s), _c=report["class"].map(order_c))
    return report.sort_values(["_s", "_c"]).drop(columns=["_s", "_c"]).reset_index(drop=True)

"""Study B (celldeath: transmitted-light fields sliced into tiles) as an adapter of the SampleDataModule.

The sample table comes from the file-name route (``sources.celldeath``: name parser, the authors'
tile grid); the splits are the study's own (held-out replicate, leave-one-cell-line-out, within one
replicate: ``celldeath.splits``) drawn per group (field, or copies of one field); the split report
is the study's (split x class x replicate x line). Crop store, loaders, checks and the preprocess
spec are the shared ones (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import pandas as pd
from pytorch_lightning.utilities import rank_zero_only

from stainfree.data.celldeath import catalog, splits, synthetic
from stainfree.data.celldeath.naming import NameScheme
from stainfree.data.celldeath.tiling import tile_boxes
from stainfree.data.celldeath.transforms import TLMAugment
from stainfree.data.dataset import Augment
from stainfree.data.module import SampleDataModule, plain
from stainfree.data.samples import HINTS
from stainfree.data.sources.celldeath import read_celldeath
from stainfree.data.transforms import BatchDihedralAugment
from stainfree.utils.errors import UserError

TABLE_COLUMNS = ["path", "image_id", "tile", "tile_row", "tile_col", "cell_line", "treatment", "treatment_token",
                 "time", "replicate", "target", "split", "cache_row"]
RESIZE_MODES = ("squish", "crop", "square")


def _scratch_dir() -> Path:
    """A crop-store folder for ``cache_dir=None`` (removed when the process ends)."""
    folder = Path(tempfile.mkdtemp(prefix="stainfree-tiles-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


class CellDeathDataModule(SampleDataModule):
    """Tiles of TLM fields, labels from file names; splits by replicate, cell line or within a replicate.

    See conf/data/celldeath.yaml for every option with its meaning.
    """

    def __init__(self, root: str | os.PathLike, task: str = "cpt_vs_dmso", num_classes: int | None = None,
                 cell_lines: Sequence[str] | None = None, time_points: Sequence[int] | None = None,
                 n_tiles: int = 4, input_size: int = 224, resize: str = "squish", stretch_8bit: bool = False,
                 test_replicate: str | None = "last", holdout_cell_line: str | None = None,
                 within_replicate: str | None = None, val_fraction: float = 0.3, test_fraction: float = 0.2,
                 split_seed: int = 0, naming: dict | None = None, on_unlabelled: str = "error",
                 batch_size: int = 16, eval_batch_size: int | None = None, num_workers: int = 0,
                 pin_memory: bool | None = None, weighted_sampler: bool = False, augment: bool = True,
                 augment_on: str = "cpu", augment_params: dict | None = None, cache_dir: str | os.PathLike | None = None,
                 report_dir: str | os.PathLike | None = None, synthetic: dict | None = None, seed: int = 0,
                 duplicates: dict | None = None, verify: str = "none") -> None:
        if task not in catalog.TASKS:
            raise UserError(f"data.task='{task}' is not supported; use one of {catalog.TASKS}")
        if task == "all_vs_all" and holdout_cell_line is not None:
            raise UserError("data.holdout_cell_line needs data.task=cpt_vs_dmso: an all_vs_all model cannot "
                            "name classes of a line it never saw")
        if resize not in RESIZE_MODES:
            raise UserError(f"data.resize='{resize}' is not supported; use one of {RESIZE_MODES}")
        tile_boxes(960, 1280, int(n_tiles))  # validates n_tiles now, not after minutes of loading
        super().__init__(input_size=input_size, num_classes=num_classes, positive_class=None,
                         stretch_8bit=stretch_8bit, region={"shape": resize}, duplicates=duplicates, verify=verify,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         pin_memory=pin_memory, augment=augment, augment_on=augment_on,
                         weighted_sampler=weighted_sampler, seed=seed,
                         cache_dir=cache_dir if cache_dir else _scratch_dir(), report_dir=report_dir)
        self.root = Path(root)
        self.task = task
        self.n_tiles = int(n_tiles)
        self.cell_lines = list(plain(cell_lines)) if cell_lines else None
        self.time_points = [int(t) for t in plain(time_points)] if time_points is not None else None
        self.split_mode_cfg = splits.SplitConfig(
            test_replicate=None if test_replicate is None else str(test_replicate),
            holdout_cell_line=None if holdout_cell_line is None else str(holdout_cell_line),
            within_replicate=None if within_replicate is None else str(within_replicate),
            val_fraction=float(val_fraction), test_fraction=float(test_fraction), seed=int(split_seed))
        self.synthetic = plain(synthetic) or None
        naming = dict(plain(naming) or {})
        if self.synthetic:  # generated line names are tokens of their own
            lines = dict(naming.get("cell_lines") or NameScheme().cell_lines)
            for line in self.synthetic.get("lines", []):
                lines.setdefault(str(line), [re.escape(str(line))])
            naming["cell_lines"] = lines
        self.naming = naming
        NameScheme.from_config(naming)  # bad tokens fail now
        self.on_unlabelled = on_unlabelled
        self.augment_params = plain(augment_params) or {}
        # known before reading the folder unless all_vs_all takes its lines from the data
        self.class_names = (catalog.class_names_for(pd.DataFrame({"cell_line": self.cell_lines or []}), task,
                                                    self.cell_lines)
                            if task == "cpt_vs_dmso" or self.cell_lines else [])
        self.positive_class = "celldeath" if task == "cpt_vs_dmso" else None
        self.missing_class_hint = " (see the split report above: data.test_replicate / within_replicate / holdout_cell_line)"
        self._mode = self.split_mode_cfg.mode
        self._excluded: dict[str, int] = {}

    # ------------------------------------------------------------------ the adapter's own work
    def ensure_data(self) -> None:
        if self.synthetic:
            args = dict(self.synthetic)
            if "size" in args:
                args["size"] = tuple(args["size"])
            synthetic.generate(self.root, **args)

    def load_table(self) -> pd.DataFrame:
        table = read_celldeath(self.root, self.naming, self.on_unlabelled, self.task, self.cell_lines,
                               self.time_points, self.n_tiles)
        self._excluded = dict(table.attrs[HINTS].get("excluded", {}))
        return table

    def define_classes(self, table: pd.DataFrame) -> list[str]:
        return list(self._hints["classes"])

    def split_samples(self, table: pd.DataFrame) -> pd.DataFrame:
        """The study's split modes, drawn per group (one field, or the copies of one field)."""
        t = table.copy()
        names = self._hints["classes"]
        groups = t.drop_duplicates("group").reset_index(drop=True)
        images = pd.DataFrame({"image_id": groups["group"], "target": groups["label"].map(names.index),
                               "cell_line": groups["cell_line"], "replicate": groups["replicate"]})
        assigned = splits.assign_splits(images, self.split_mode_cfg)
        self._mode = assigned.attrs.get("split_mode", self.split_mode_cfg.mode)
        self._excluded["other replicates"] = len(images) - len(assigned)
        t["split"] = t["group"].map(dict(zip(assigned["image_id"], assigned["split"]))).fillna("")
        t["cache_row"] = t["store_row"]
        return t[t["split"] != ""]

    def required_splits(self) -> Sequence[str]:
        """train, val unless val_fraction is 0, test unless the mode draws it with test_fraction 0."""
        cfg = self.split_mode_cfg
        drawn_test = cfg.holdout_cell_line is None and (cfg.within_replicate is not None or cfg.test_replicate is None)
        return tuple(s for s, need in (("train", True), ("val", cfg.val_fraction > 0),
                                       ("test", not drawn_test or cfg.test_fraction > 0)) if need)

    def make_augment(self) -> Augment | None:
        return TLMAugment(**self.augment_params) if self.augment else None

    def make_batch_augment(self) -> BatchDihedralAugment:
        """Only the 8 symmetries move to the device: the rotate/zoom/lighting parts stay CPU-only."""
        cpu_only = TLMAugment(**self.augment_params).cpu_only_parts()
        if cpu_only:
            raise UserError(f"data.augment_on=gpu moves only the flips/90-degree turns, but data.augment_params "
                            f"also asks for {', '.join(cpu_only)}; set data.augment_on=cpu, or "
                            "data.augment_params.p_affine=0 and data.augment_params.p_lighting=0")
        return super().make_batch_augment()

    @rank_zero_only
    def report(self, samples: pd.DataFrame) -> None:
        """Print the split (mode, counts per split x class x replicate x line) and save it as CSV."""
        report = splits.split_report(samples, self.class_names)
        excluded = ", ".join(f"{k}: {v}" for k, v in self._excluded.items() if v) or "none"
        print("\n".join([f"celldeath split of {self.root} — {self._mode}; task {self.task}; "
                         f"{samples['image_id'].nunique()} images x {self.n_tiles} tiles; classes {self.class_names}; "
                         f"images left out: {excluded}", self.summary().to_string(), report.to_string(index=False)]))
        self.save_report(report, "celldeath_split_report.csv")
        self.save_report(samples, "celldeath_split_table.csv")

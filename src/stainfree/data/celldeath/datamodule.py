"""LightningDataModule of the celldeath study (transmitted-light fields sliced into tiles).

prepare_data: (synthetic set on first use), parse names, tile every field into the uint8 memmap
cache. setup: split by field, check no leakage, print + save the split report. Batches follow
docs/ARCHITECTURE.md: uint8 ``image`` [B, 1, S, S], ``target``, ``index`` (row of split_table).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader

from stainfree.data.celldeath import catalog, splits, synthetic
from stainfree.data.celldeath.dataset import TileDataset
from stainfree.data.celldeath.naming import NameScheme
from stainfree.data.celldeath.tiling import TileSpec, build_tiles, tile_boxes
from stainfree.data.celldeath.transforms import TLMAugment
from stainfree.data.samplers import (EpochRandomSampler, EpochWeightedRandomSampler, class_balanced_weights,
                                     drop_lone_last_batch)
from stainfree.utils import runtime
from stainfree.utils.atomic import atomic_path, unique_path

log = logging.getLogger(__name__)

# threads that decode/tile fields while building the cache (cv2 releases the GIL)
_CACHE_THREADS = min(8, os.cpu_count() or 1)
TABLE_COLUMNS = ["path", "image_id", "tile", "tile_row", "tile_col", "cell_line", "treatment", "treatment_token",
                 "time", "replicate", "target", "split", "cache_row"]


def _plain(value: Any) -> Any:
    """OmegaConf containers -> plain python (hydra passes DictConfig/ListConfig)."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class CellDeathDataModule(pl.LightningDataModule):
    """Tiles of TLM fields, labels from file names; splits by replicate, cell line or within a replicate.

    See conf/data/celldeath.yaml for every option with its meaning.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        task: str = "cpt_vs_dmso",
        num_classes: int | None = None,
        cell_lines: Sequence[str] | None = None,
        time_points: Sequence[int] | None = None,
        n_tiles: int = 4,
        input_size: int = 224,
        resize: str = "squish",
        stretch_8bit: bool = False,
        test_replicate: str | None = "last",
        holdout_cell_line: str | None = None,
        within_replicate: str | None = None,
        val_fraction: float = 0.3,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        naming: dict | None = None,
        on_unlabelled: str = "error",
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool = False,
        weighted_sampler: bool = False,
        augment: bool = True,
        augment_params: dict | None = None,
        cache_dir: str | os.PathLike | None = None,
        report_dir: str | os.PathLike | None = None,
        synthetic: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if task not in catalog.TASKS:
            raise ValueError(f"data.task='{task}' is not supported; use one of {catalog.TASKS}")
        if task == "all_vs_all" and holdout_cell_line is not None:
            raise ValueError("data.holdout_cell_line needs data.task=cpt_vs_dmso: an all_vs_all model cannot "
                             "name classes of a line it never saw")
        self.root = Path(root)
        self.task = task
        self.expected_classes = int(num_classes) if num_classes is not None else None
        self.cell_lines = list(_plain(cell_lines)) if cell_lines else None
        self.time_points = [int(t) for t in _plain(time_points)] if time_points is not None else None
        self.spec = TileSpec(n_tiles=int(n_tiles), input_size=int(input_size), resize=resize,
                             stretch_uint8=bool(stretch_8bit))
        tile_boxes(960, 1280, self.spec.n_tiles)  # validates n_tiles now, not after minutes of loading
        self.split_cfg = splits.SplitConfig(
            test_replicate=None if test_replicate is None else str(test_replicate),
            holdout_cell_line=None if holdout_cell_line is None else str(holdout_cell_line),
            within_replicate=None if within_replicate is None else str(within_replicate),
            val_fraction=float(val_fraction), test_fraction=float(test_fraction), seed=int(split_seed))
        self.synthetic = _plain(synthetic) or None
        naming = dict(_plain(naming) or {})
        if self.synthetic:  # generated line names are tokens of their own
            lines = dict(naming.get("cell_lines") or NameScheme().cell_lines)
            for line in self.synthetic.get("lines", []):
                lines.setdefault(str(line), [re.escape(str(line))])
            naming["cell_lines"] = lines
        self.naming = naming
        self.scheme = NameScheme.from_config(naming)
        self.on_unlabelled = on_unlabelled
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        # None: the runtime rule (stainfree.utils.runtime); train/eval pass the value they chose
        self.num_workers = runtime.default_workers() if num_workers is None else int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.weighted_sampler = bool(weighted_sampler)
        self.augment = TLMAugment(**(_plain(augment_params) or {})) if augment else None
        self.seed = int(seed)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.report_dir = Path(report_dir) if report_dir else None
        # known before reading the folder unless all_vs_all takes its lines from the data
        self.class_names: list[str] = (
            catalog.class_names_for(pd.DataFrame({"cell_line": self.cell_lines or []}), task, self.cell_lines)
            if task == "cpt_vs_dmso" or self.cell_lines else [])
        self._table: pd.DataFrame | None = None
        self._excluded: dict[str, int] = {}
        self._mode = self.split_cfg.mode
        self._tiles: np.ndarray | None = None
        self._datasets: dict[str, TileDataset] = {}

    # ------------------------------------------------------------------ preparation
    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.expected_classes or 0)

    def _ensure_synthetic(self) -> None:
        if self.synthetic:
            args = dict(self.synthetic)
            if "size" in args:
                args["size"] = tuple(args["size"])
            synthetic.generate(self.root, **args)

    def _images(self) -> pd.DataFrame:
        """Catalogue after the time filter, with class targets (fixed class order)."""
        table = catalog.scan_folder(self.root, self.scheme, self.on_unlabelled)
        n_unlabelled = table.attrs.get("n_unlabelled", 0)
        n_all = len(table)
        table = catalog.select_time_points(table, self.time_points)
        self._excluded = {"unlabelled": n_unlabelled, "other time points": n_all - len(table)}
        names = catalog.class_names_for(table, self.task, self.cell_lines)
        if self.expected_classes is not None and self.expected_classes != len(names):
            raise ValueError(
                f"data.num_classes={self.expected_classes} but {self.root} gives {len(names)} classes {names} for "
                f"task {self.task}; set data.num_classes={len(names)} (the model head follows it)")
        self.class_names = names
        table["target"] = catalog.targets_for(table, self.task, names)
        return table

    def prepare_data(self) -> None:
        """Generate (synthetic) and tile every selected field into the cache once (rank 0)."""
        self._ensure_synthetic()
        if self.cache_dir is not None:
            build_tiles(self._images()["path"].tolist(), self.spec, self.cache_dir, workers=_CACHE_THREADS)

    def setup(self, stage: str | None = None) -> None:
        if self._table is not None:
            return
        self._ensure_synthetic()
        labelled = self._images()
        images = splits.assign_splits(labelled, self.split_cfg).reset_index(drop=True)
        self._excluded["other replicates"] = len(labelled) - len(images)
        self._mode = images.attrs.get("split_mode", self.split_cfg.mode)
        self._tiles = build_tiles(images["path"].tolist(), self.spec, self.cache_dir, workers=_CACHE_THREADS)
        self._table = self._tile_table(images)
        splits.check_no_leakage(self._table)
        for name in splits.SPLITS:
            part = self._table[self._table["split"] == name]
            aug = self.augment if name == "train" else None
            self._datasets[name] = TileDataset(self._tiles, part["cache_row"].to_numpy(), part["target"].to_numpy(), aug,
                                               self.seed)
        self._report(images)

    def _tile_table(self, images: pd.DataFrame) -> pd.DataFrame:
        """One row per tile: image metadata + tile position + row in the tile array."""
        rows, cols = self.spec.as_dict()["grid"]
        n = self.spec.n_tiles
        t = images.loc[images.index.repeat(n)].reset_index(drop=True)
        t["tile"] = np.tile(np.arange(n), len(images))
        t["tile_row"], t["tile_col"] = t["tile"] // cols + 1, t["tile"] % cols + 1
        t["cache_row"] = np.arange(len(t))
        t = t.rename(columns={"label": "treatment"})
        return t[TABLE_COLUMNS]

    @rank_zero_only
    def _report(self, images: pd.DataFrame) -> None:
        """Print the split (mode, counts per split x class x replicate x line) and save it as CSV."""
        assert self._table is not None
        report = splits.split_report(self._table, self.class_names)
        excluded = ", ".join(f"{k}: {v}" for k, v in self._excluded.items() if v) or "none"
        lines = [f"celldeath split of {self.root} — {self._mode}; task {self.task}; "
                 f"{len(images)} images x {self.spec.n_tiles} tiles; classes {self.class_names}; "
                 f"images left out: {excluded}",
                 self.summary().to_string(), report.to_string(index=False)]
        print("\n".join(lines))
        if self.report_dir is not None:
            for name, frame in (("celldeath_split_report.csv", report), ("celldeath_split_table.csv", self._table)):
                with atomic_path(unique_path(self.report_dir / name), overwrite=False) as tmp:
                    frame.to_csv(tmp, index=False)

    # ------------------------------------------------------------------ contract
    def split_table(self, stage: str) -> pd.DataFrame:
        """Rows of one split (train/val/test; predict = test) in dataset order; ``index`` refers to these rows."""
        if self._table is None:
            raise RuntimeError("call setup() before split_table()")
        name = {"fit": "train", "validate": "val", "predict": "test"}.get(stage, stage)
        if name not in splits.SPLITS:
            raise ValueError(f"unknown split '{stage}'; use one of {splits.SPLITS}")
        return self._table[self._table["split"] == name].reset_index(drop=True)

    def summary(self) -> pd.DataFrame:
        """Tiles per split and class (the Table-1 view)."""
        if self._table is None:
            raise RuntimeError("call setup() before summary()")
        return splits.split_summary(self._table, self.class_names)

    def preprocess_config(self) -> dict[str, Any]:
        """What predict.py needs to tile raw fields the same way."""
        return {"study": "celldeath", **self.spec.as_dict(), "window": None, "stride": None, "empty_filter": None,
                "task": self.task, "class_names": list(self.class_names), "naming": self.naming}

    # ------------------------------------------------------------------ loaders
    def _loader(self, name: str, train: bool) -> DataLoader:
        if not self._datasets:
            self.setup()
        ds = self._datasets[name]
        if len(ds) == 0:
            raise ValueError(f"the {name} split is empty ({self.split_cfg.mode}); see the split report above")
        sampler = None
        if train:  # epoch-seeded: yields (index, epoch) so augmentation is reproducible on resume
            sampler = (EpochWeightedRandomSampler(class_balanced_weights(ds.targets), len(ds), seed=self.seed)
                       if self.weighted_sampler else EpochRandomSampler(ds, seed=self.seed))
        drop_last = train and drop_lone_last_batch(len(sampler), self.batch_size)
        return DataLoader(ds, batch_size=self.batch_size if train else self.eval_batch_size,
                          sampler=sampler, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, drop_last=drop_last, persistent_workers=self.num_workers > 0,
                          worker_init_fn=runtime.worker_init)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)

"""LightningDataModule for study A (JIMT-1 bright-field patches labelled from PI).

``prepare_data`` builds the cache once (generating the synthetic set first when asked and the
manifest is missing); ``setup`` only reads it, so every DDP rank sees the same patches.
Contract: docs/ARCHITECTURE.md (dict batches ``image``/``target``/``index``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from stainfree.data.jimt import preprocess
from stainfree.data.jimt.dataset import JimtPatchDataset
from stainfree.data.jimt.labels import CLASS_NAMES
from stainfree.data.jimt.manifest import load_manifest
from stainfree.data.samplers import (EpochRandomSampler, EpochWeightedRandomSampler, class_balanced_weights,
                                     drop_lone_last_batch)
from stainfree.utils import runtime

_STAGE_SPLIT = {"fit": "train", "train": "train", "validate": "val", "val": "val",
                "test": "test", "predict": "test"}
TABLE_COLUMNS = ["frame_id", "dataset", "frame_idx", "y", "x", "pi_mean", "empty_score", "label",
                 "target", "split"]


def _plain(value: Any) -> Any:
    """Hydra passes DictConfig/ListConfig; turn them into plain dicts/lists for hashing and JSON."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    return value


class JimtDataModule(pl.LightningDataModule):
    """Patches of one JIMT-1 dataset (``notreat`` or ``doxo``) split 80/10/10 by raw frame."""

    class_names: list[str] = list(CLASS_NAMES)

    def __init__(self, manifest: str | Path, dataset: str = "notreat", cache_dir: str | Path = "data/cache/jimt",
                 synthetic: dict | None = None, bf_to8bit: dict | None = None, window: int = 224,
                 stride: int = 224, empty_filter: dict | None = None, labels: dict | None = None,
                 split: dict | None = None, input_size: int = 224, batch_size: int = 4, num_workers: int | None = None,
                 pin_memory: bool = False, persistent_workers: bool = False, augment: bool = True,
                 weighted_sampler: bool = True, samples_per_epoch: int | None = None, seed: int = 0,
                 num_classes: int = 2) -> None:
        super().__init__()
        if int(num_classes) != len(CLASS_NAMES):
            raise ValueError(f"data.num_classes={num_classes}, but JIMT-1 has exactly {len(CLASS_NAMES)} "
                             f"classes {CLASS_NAMES}; set data.num_classes: 2")
        self.manifest = Path(manifest)
        self.dataset = str(dataset)
        self.cache_dir = Path(cache_dir)
        self.synthetic = _plain(synthetic)
        self.prep_cfg = preprocess.normalise_config(
            _plain(bf_to8bit), window, stride, _plain(empty_filter), _plain(labels), _plain(split))
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        # None: the runtime rule (stainfree.utils.runtime); train/eval pass the value they chose
        self.num_workers = runtime.default_workers() if num_workers is None else int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.augment = bool(augment)
        self.weighted_sampler = bool(weighted_sampler)
        self.samples_per_epoch = None if samples_per_epoch is None else int(samples_per_epoch)
        self.seed = int(seed)
        self.num_classes = len(CLASS_NAMES)
        self._epoch = 0
        self._tables: dict[str, pd.DataFrame] = {}
        self._prepared: preprocess.Prepared | None = None
        self._train_sampler: EpochWeightedRandomSampler | EpochRandomSampler | None = None

    # ---- one-off work -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate the synthetic set if configured and missing, then build/reuse the patch cache."""
        if self.synthetic:
            from stainfree.data.jimt.synthetic import check_existing, generate_dataset

            if self.manifest.is_file():
                check_existing(self.manifest.parent, **self.synthetic)
            else:
                print(f"{self.manifest} not found: generating the synthetic JIMT-1 set {self.synthetic}")
                generate_dataset(self.manifest.parent, **self.synthetic)
        self._prepared = preprocess.prepare(self.manifest, self.cache_dir, self.prep_cfg)

    def setup(self, stage: str | None = None) -> None:
        """Load the cached index and cut it into this dataset's train/val/test tables."""
        if self._tables:
            return
        prepared = preprocess.locate(self.manifest, self.cache_dir, self.prep_cfg) if self.manifest.is_file() else None
        if prepared is None or not (prepared.folder / "index.csv").is_file():
            self.prepare_data()  # e.g. setup() called directly in a notebook
            prepared = self._prepared
        assert prepared is not None
        self._prepared = prepared
        index = prepared.index()
        datasets = sorted(index["dataset"].unique())
        if self.dataset not in datasets:
            raise ValueError(f"data.dataset='{self.dataset}' is not in {self.manifest} "
                             f"(datasets there: {datasets}); set data.dataset to one of them")
        keep = index[(index["dataset"] == self.dataset) & (index["target"] >= 0)]
        for split in ("train", "val", "test"):
            self._tables[split] = keep[keep["split"] == split][TABLE_COLUMNS].reset_index(drop=True)
        train = self._tables["train"]
        missing = [CLASS_NAMES[c] for c in range(len(CLASS_NAMES)) if not (train["target"] == c).any()]
        if missing:
            raise ValueError(f"the train split of '{self.dataset}' has no {missing} patches "
                             f"(see {prepared.folder / 'summary.md'}); add frames or adjust the labels config")

    # ---- contract -----------------------------------------------------------------------------
    def split_table(self, stage: str) -> pd.DataFrame:
        """One row per sample of ``stage`` (fit/train, validate/val, test/predict) in dataset order."""
        if stage not in _STAGE_SPLIT:
            raise ValueError(f"unknown stage '{stage}'; use one of {sorted(_STAGE_SPLIT)}")
        self.setup(stage)
        return self._tables[_STAGE_SPLIT[stage]].copy()

    def summary(self) -> pd.DataFrame:
        """Table 1: raw frames, patches, live/dead per split, for every dataset in the manifest."""
        self.setup()
        assert self._prepared is not None
        return self._prepared.summary()

    def preprocess_config(self) -> dict[str, Any]:
        """Everything predict.py needs to tile raw frames exactly like the training data."""
        self.setup()
        assert self._prepared is not None
        return {
            "study": "jimt", "dataset": self.dataset, "class_names": list(CLASS_NAMES),
            "window": self.prep_cfg["window"], "stride": self.prep_cfg["stride"],
            "bf_to8bit": self.prep_cfg["bf_to8bit"], "empty_filter": self.prep_cfg["empty_filter"],
            "empty_filter_fit": self._prepared.empty_filter_report(),
            "svm_path": str(self._prepared.folder / "svm.joblib")
            if self.prep_cfg["empty_filter"]["method"] == "svm" else None,
            "labels": self._prepared.thresholds(), "input_size": self.input_size,
            "cache": str(self._prepared.folder),
        }

    # ---- loaders ------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Epoch that seeds the train sampler and augmentation (Lightning also calls the sampler's)."""
        self._epoch = int(epoch)
        if self._train_sampler is not None:
            self._train_sampler.set_epoch(self._epoch)

    def _dataset(self, split: str, augment: bool) -> JimtPatchDataset:
        self.setup()
        assert self._prepared is not None
        return JimtPatchDataset(self._prepared.bf8_path, self._tables[split], self.prep_cfg["window"],
                                self.input_size, augment=augment, seed=self.seed)

    def _loader(self, ds: JimtPatchDataset, **kw: Any) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.persistent_workers,
                          worker_init_fn=runtime.worker_init, **kw)

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset("train", augment=self.augment)
        n = self.samples_per_epoch or len(ds)
        trainer = getattr(self, "trainer", None)
        # multi-GPU: each rank keeps its shard of the same epoch draw (samplers.py explains why)
        shard = {"num_replicas": trainer.world_size, "rank": trainer.global_rank} if trainer is not None else {}
        if self.weighted_sampler:
            sampler = EpochWeightedRandomSampler(class_balanced_weights(ds.targets), n, seed=self.seed, **shard)
        else:
            sampler = EpochRandomSampler(ds, num_samples=self.samples_per_epoch, seed=self.seed, **shard)
        self._train_sampler = sampler
        self.set_epoch(trainer.current_epoch if trainer is not None else self._epoch)
        return self._loader(ds, sampler=sampler, drop_last=drop_lone_last_batch(len(sampler), self.batch_size))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val", augment=False), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test", augment=False), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

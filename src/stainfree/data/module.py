"""SampleDataModule: the ONE generic DataModule; everything after the sample table is shared.

A ``source=`` importer (``stainfree.data.sources``) or a subclass (the JIMT-1 and celldeath
adapters) provides the sample table. Then: crop store (``prepare_data``), duplicate grouping,
group-aware splits, leakage and class pre-flight checks, split report, loaders of uint8 batches
(``setup``). Every user error is raised by ``prepare_data``/``setup``, before a logger starts.
Contract: docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader

from stainfree.data import duplicates as dup
from stainfree.data import identity, sources, splits
from stainfree.data.dataset import Augment, CropDataset
from stainfree.data.samplers import (
    EpochRandomSampler,
    EpochWeightedRandomSampler,
    class_balanced_weights,
    drop_lone_last_batch,
)
from stainfree.data.samples import HINTS, SPLITS, SampleTableError, validate_samples
from stainfree.data.spec import EightBit, Layout, PreprocessSpec, Region
from stainfree.data.store import CropStore, Loader, build_store
from stainfree.data.transforms import BatchDihedralAugment
from stainfree.utils import runtime
from stainfree.utils.atomic import atomic_path, unique_path
from stainfree.utils.errors import UserError

STAGE_SPLIT = {"fit": "train", "train": "train", "validate": "val", "val": "val", "test": "test", "predict": "test"}
BACKGROUND_PERCENTILE = 2.0  # windows whose 8-bit std is below this percentile of the training crops' are background
COMMON_KEYS = ("input_size", "num_classes", "classes", "positive_class", "channel", "to_8bit", "stretch_8bit",
               "region", "split", "duplicates", "verify", "batch_size", "eval_batch_size", "num_workers",
               "pin_memory", "persistent_workers", "augment", "augment_on", "weighted_sampler", "samples_per_epoch", "seed",
               "cache_dir", "report_dir")
AUGMENT_PLACES = ("cpu", "gpu", "auto")


def plain(value: Any) -> Any:
    """Hydra passes DictConfig/ListConfig: plain dicts/lists for hashing, JSON and checkpoints."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _typed(kind: type, values: dict[str, Any], where: str) -> Any:
    """A spec part from a config dict: unknown keys refused with one line, null = the default."""
    allowed = [f.name for f in fields(kind)]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise UserError(f"data.{where}: unknown key(s) {unknown}; allowed: {allowed}")
    return kind(**{k: v for k, v in values.items() if v is not None})


def _dihedral_augment() -> Augment:
    from stainfree.data.transforms import DihedralAugment

    return DihedralAugment()


class SampleDataModule(pl.LightningDataModule):
    """Samples of any labelled bright-field source (``source=`` importer, or a subclass's table)."""

    missing_class_hint = ""  # adapters add where to look (e.g. their summary file)

    def __init__(self, source: str | None = None, input_size: int = 224, num_classes: int | None = None,
                 classes: Sequence[str] | None = None, positive_class: str | None = "dead",
                 channel: str | int = "mean", to_8bit: dict | None = None, stretch_8bit: bool = False,
                 region: dict | None = None, split: dict | None = None, duplicates: dict | None = None,
                 verify: str = "none", batch_size: int = 32, eval_batch_size: int | None = None,
                 num_workers: int | None = None, pin_memory: bool | None = None,
                 persistent_workers: bool | None = None, augment: bool = True, augment_on: str = "cpu",
                 weighted_sampler: bool = True, samples_per_epoch: int | None = None,
                 seed: int = 0, cache_dir: str | os.PathLike = "data/cache/samples",
                 report_dir: str | os.PathLike | None = None, **source_options: Any) -> None:
        given = {k: plain(v) for k, v in locals().items() if k in COMMON_KEYS}
        super().__init__()
        self.input_size = int(input_size)
        self.eight_bit = _typed(EightBit, {**(plain(to_8bit) or {}), "stretch_8bit": bool(stretch_8bit)}, "to_8bit")
        self.region = _typed(Region, plain(region) or {}, "region")
        if channel != "mean" and not str(channel).isdigit():
            raise UserError(f"data.channel={channel!r} must be 'mean' or a channel/page index (0, 1, ...)")
        self.channel = channel if channel == "mean" else int(channel)
        PreprocessSpec(self.input_size, self.channel, self.eight_bit, self.region)  # validates now, not after loading
        self.expected_classes = None if num_classes is None else int(num_classes)
        self.classes = [str(c) for c in plain(classes)] if classes else None
        self.class_names: list[str] = list(self.classes or [])
        self.positive_class = positive_class
        self.split_cfg = splits.SplitConfig.from_config(plain(split))
        self.duplicates = dup.DuplicateConfig.from_config(plain(duplicates))
        self.verify = identity.check_verify(str(verify))
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        # None: the runtime rule (stainfree.utils.runtime); train/eval pass the value they chose
        self.num_workers = runtime.default_workers() if num_workers is None else int(num_workers)
        self.pin_memory = None if pin_memory is None else bool(pin_memory)  # None: follow the accelerator
        self.persistent_workers = (self.num_workers > 0 if persistent_workers is None
                                   else bool(persistent_workers) and self.num_workers > 0)
        self.augment = bool(augment)
        if augment_on not in AUGMENT_PLACES:
            raise UserError(f"data.augment_on={augment_on!r} is not supported; use one of {list(AUGMENT_PLACES)}")
        self.augment_on = str(augment_on)
        self.weighted_sampler = bool(weighted_sampler)
        self.samples_per_epoch = None if samples_per_epoch is None else int(samples_per_epoch)
        self.seed = int(seed)
        self.cache_dir = Path(cache_dir)
        self.report_dir = Path(report_dir) if report_dir else None
        self.source = source
        if source is not None:
            self._reader, self._reader_kwargs = sources.bind(
                source, {k: plain(v) for k, v in source_options.items()}, given)
        elif source_options:
            raise UserError(f"data.{sorted(source_options)[0]} is not a data option here; known keys: {list(COMMON_KEYS)}")
        self._raw: pd.DataFrame | None = None
        self._hints: dict[str, Any] = {}
        self._store: CropStore | None = None
        self._samples: pd.DataFrame | None = None
        self._spec: PreprocessSpec | None = None
        self._datasets: dict[str, CropDataset] = {}
        self._epoch = 0
        self._train_sampler: EpochWeightedRandomSampler | EpochRandomSampler | None = None
        self._batch_augment: BatchDihedralAugment | None = None  # set when the train loader's batches are raw
        self._batch_count = (-1, 0)  # (epoch, batches augmented in it): seeds the device draw

    # ------------------------------------------------------------------ hooks for adapters
    def ensure_data(self) -> None:
        """Make the source data exist (e.g. a synthetic set on first use); no-op by default."""

    def load_table(self) -> pd.DataFrame:
        """The validated sample table (the importer's, by default)."""
        if self.source is None:
            raise NotImplementedError("SampleDataModule needs source=<importer> or a subclass that loads a table")
        return validate_samples(self._reader(**self._reader_kwargs), source=f"data source '{self.source}'")

    def pixel_spec(self) -> PreprocessSpec:
        """The parts of the spec that decide crop pixels (the crop store's key)."""
        channel = self._hints.get("channel") if self._hints.get("channel") is not None else self.channel
        return PreprocessSpec(input_size=self.input_size, channel=channel, to_8bit=self.eight_bit, region=self.region)

    def frame_loader(self) -> Loader | None:
        """8-bit source images for the store (None = decode with ``pixels``)."""
        return None

    def define_classes(self, table: pd.DataFrame) -> list[str]:
        """``classes`` if given (must cover every label); else sorted, the positive class last."""
        labels = sorted(set(table["label"]))
        if self.classes:
            extra = [lb for lb in labels if lb not in self.classes]
            if extra:
                raise SampleTableError(f"the data has label(s) {extra} that data.classes={self.classes} does not "
                                       "list; add them to data.classes or map them in the importer")
            return list(self.classes)
        if self.positive_class in labels:
            labels = [lb for lb in labels if lb != self.positive_class] + [str(self.positive_class)]
        return labels

    def split_samples(self, table: pd.DataFrame) -> pd.DataFrame:
        """Fill ``split`` by group (``data.split``); rows whose split is not train/val/test are left out."""
        if self.split_cfg.group_regex:
            table = table.assign(group=splits.groups_from_names(table, self.split_cfg.group_regex))
        return splits.assign_splits(table, self.split_cfg)

    def required_splits(self) -> Sequence[str]:
        return self.split_cfg.required

    def make_augment(self) -> Augment | None:
        """Training augmentation (random 90-degree turns + flips); None when ``augment`` is off."""
        return _dihedral_augment() if self.augment else None

    def make_batch_augment(self) -> BatchDihedralAugment:
        """The device-side twin of ``make_augment`` (``augment_on=gpu``); subclasses whose CPU
        augmentation does more than the 8 symmetries refuse it with a UserError."""
        return BatchDihedralAugment(self.seed)

    def finish_spec(self, samples: pd.DataFrame, store: CropStore) -> PreprocessSpec:
        """The full spec: pixel parts + layout, source scale and background filter for predict."""
        train = samples[samples["split"] == "train"]
        rows = store.rows.iloc[train["store_row"].to_numpy()]
        scale = float(np.median(np.sqrt((rows["cx1"] - rows["cx0"]) * (rows["cy1"] - rows["cy0"]))))
        hints = self._hints
        if hints.get("layout"):
            layout = Layout(**hints["layout"])
        elif (samples["region_kind"] == "image").all():
            layout = Layout(kind="whole")
        else:
            window = max(1, int(round(scale)))
            layout = Layout(kind="windows", window=window, stride=max(1, window // 2))
        empty = hints.get("empty_filter")
        if empty is None and layout.kind == "windows" and not (samples["region_kind"] == "window").all():
            empty = {"method": "variance", "statistic": "bf8_std",
                     "threshold": float(np.percentile(rows["bf8_std"], BACKGROUND_PERCENTILE))}
        base = self.pixel_spec()
        return PreprocessSpec(input_size=base.input_size, channel=base.channel, to_8bit=base.to_8bit,
                              region=base.region, layout=layout, source_scale=scale, empty_filter=empty)

    @rank_zero_only
    def report(self, samples: pd.DataFrame) -> None:
        """Print the split report (groups and samples per split x class) and save it as CSV."""
        report = splits.split_report(samples, self.class_names)
        name = self.source or type(self).__name__
        print(f"data split of {name}: {samples['group'].nunique():,} groups, {len(samples):,} samples; "
              f"classes {self.class_names}\n{report.to_string(index=False)}")
        self.save_report(report, "split_report.csv")

    def save_report(self, frame: pd.DataFrame, name: str) -> None:
        if self.report_dir is not None:
            with atomic_path(unique_path(self.report_dir / name), overwrite=False) as tmp:
                frame.to_csv(tmp, index=False)

    # ------------------------------------------------------------------ preparation
    def _table(self) -> pd.DataFrame:
        if self._raw is None:
            self._raw = self.load_table()
            self._hints = dict(self._raw.attrs.get(HINTS) or {})
        return self._raw

    def _store_for(self, table: pd.DataFrame) -> CropStore:
        if self._store is None:
            self._store = build_store(table, self.pixel_spec(), self.cache_dir, verify=self.verify,
                                      loader=self.frame_loader(), listed_in=f"the {type(self).__name__} samples")
        return self._store

    def prepare_data(self) -> None:
        """Make the data exist, build the sample table and the crop store (cached; rank 0)."""
        self.ensure_data()
        self._store_for(self._table())

    def _with_store(self, table: pd.DataFrame, store: CropStore) -> pd.DataFrame:
        """Add ``store_row`` and each row's image content hash (exact-duplicate key)."""
        t = table.copy()
        t["store_row"] = np.arange(len(t))
        if "image_hash" not in t.columns:
            by_path = store.images.drop_duplicates("path").set_index("path")["image_hash"]
            t["image_hash"] = t["path"].map(by_path)
        return t

    def dedupe(self, table: pd.DataFrame, store: CropStore) -> pd.DataFrame:
        """Merge the groups of identical (and, if asked, near-identical) images; or refuse them."""
        images = store.images.drop_duplicates("path").reset_index(drop=True)
        clusters = [[images.at[i, "path"] for i in c] for c in dup.exact_clusters(images["image_hash"].tolist())]
        if clusters and self.duplicates.exact == "refuse":
            raise dup.DuplicateImagesError(
                f"{sum(len(c) for c in clusters)} images are exact copies of each other ({dup.describe(clusters)}); "
                "remove the copies or set data.duplicates.exact=group to keep them in one split")
        table, merged = dup.merge_groups(table, "path", clusters)
        if clusters:
            self._notice(f"{sum(len(c) - 1 for c in clusters)} image(s) are exact copies of others "
                         f"({dup.describe(clusters)}); their samples are grouped together ({merged} group(s) merged)")
        if self.duplicates.near:
            thumbs = store.thumbnails()[store.images.index[~store.images["path"].duplicated()]]
            near = [[images.at[i, "path"] for i in c] for c in dup.near_clusters(thumbs, self.duplicates.near_threshold)]
            group_of = table.drop_duplicates("path").set_index("path")["group"]
            near = [c for c in near if group_of.reindex(c).nunique() > 1]  # not already one group (exact copies)
            table, merged = dup.merge_groups(table, "path", near)
            self._notice(f"near-duplicate grouping (dihedral correlation >= {self.duplicates.near_threshold}): "
                         f"{len(near)} cluster(s) of similar images, {merged} group(s) merged"
                         + (f" ({dup.describe(near)})" if near else ""))
        return table

    @rank_zero_only
    def _notice(self, message: str) -> None:
        print(f"data: {message}")

    def setup(self, stage: str | None = None) -> None:
        """Table + store, duplicates, splits, checks, report, datasets (idempotent)."""
        if self._samples is not None:
            return
        self.ensure_data()
        table = self._table()
        store = self._store_for(table)
        table = self.dedupe(self._with_store(table, store), store)
        table = self.split_samples(table)
        self.class_names = self.define_classes(table)
        splits.check_two_classes(self.class_names, self.missing_class_hint)
        if self.expected_classes is not None and self.expected_classes != len(self.class_names):
            raise SampleTableError(f"data.num_classes={self.expected_classes} but the data has {len(self.class_names)} "
                                   f"classes {self.class_names}; set data.num_classes={len(self.class_names)} "
                                   "(the model head follows it)")
        samples = table[table["split"].isin(SPLITS)].reset_index(drop=True)
        samples["target"] = samples["label"].map({c: i for i, c in enumerate(self.class_names)}).astype("int64")
        splits.check_leakage(samples)
        splits.check_every_class(samples, self.class_names, self.required_splits(), self.missing_class_hint)
        self._samples = samples
        self._spec = self.finish_spec(samples, store)
        if self.augment and self.augment_on == "gpu":
            self.make_batch_augment()  # refuses settings it cannot move, before training starts
        augment = self.make_augment()
        for name in SPLITS:
            part = samples[samples["split"] == name]
            self._datasets[name] = CropDataset(store.array_path, part["store_row"].to_numpy(),
                                               part["target"].to_numpy(), augment if name == "train" else None,
                                               self.seed)
        self.report(samples)

    # ------------------------------------------------------------------ contract
    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.expected_classes or 0)

    @property
    def store(self) -> CropStore:
        self.setup()
        assert self._store is not None
        return self._store

    def sample_table(self) -> pd.DataFrame:
        """All samples (every split) with ``split``, ``target`` and ``store_row``."""
        self.setup()
        assert self._samples is not None
        return self._samples.copy()

    def split_table(self, stage: str) -> pd.DataFrame:
        """Rows of one split (fit/train, validate/val, test/predict) in dataset order; batches' ``index``."""
        if stage not in STAGE_SPLIT:
            raise ValueError(f"unknown stage '{stage}'; use one of {sorted(STAGE_SPLIT)}")
        self.setup()
        assert self._samples is not None
        return self._samples[self._samples["split"] == STAGE_SPLIT[stage]].reset_index(drop=True)

    def summary(self) -> pd.DataFrame:
        """Samples per split (rows) and class (columns, class order), with totals."""
        self.setup()
        assert self._samples is not None
        counts = pd.crosstab(self._samples["split"], self._samples["target"]).reindex(
            index=list(SPLITS), columns=range(len(self.class_names)), fill_value=0)
        counts.columns = list(self.class_names)
        counts.index.name = "split"
        counts["total"] = counts.sum(axis=1)
        return counts

    @property
    def pi_thresholds(self) -> dict[str, float]:
        """Live/dead fluorescence thresholds of a labelling importer (pairs), for the PI figures; {} if none."""
        return dict(self._hints.get("pi_thresholds") or {})

    def preprocess_spec(self) -> PreprocessSpec:
        self.setup()
        assert self._spec is not None
        return self._spec

    def preprocess_config(self) -> dict[str, Any]:
        """``preprocess_spec().to_dict()``: stored in every checkpoint for predict."""
        return self.preprocess_spec().to_dict()

    # ------------------------------------------------------------------ loaders
    def set_epoch(self, epoch: int) -> None:
        """Epoch that seeds the train sampler and augmentation (Lightning also calls the sampler's)."""
        self._epoch = int(epoch)
        if self._train_sampler is not None:
            self._train_sampler.set_epoch(self._epoch)

    def _dataset(self, split: str) -> CropDataset:
        self.setup()
        ds = self._datasets[split]
        if len(ds) == 0:
            raise SampleTableError(f"the {split} split is empty; see the split report above")
        return ds

    def _device_type(self) -> str:
        """The training device's type ('cpu', 'cuda', ...); 'cpu' outside a trainer."""
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device.type if trainer is not None else "cpu"

    def augments_on_device(self) -> bool:
        """True when training batches are augmented after the host->device copy (``data.augment_on``)."""
        if not self.augment or self.augment_on == "cpu":
            return False
        return self.augment_on == "gpu" or self._device_type() == "cuda"

    def _loader(self, ds: CropDataset, batch_size: int, **kw: Any) -> DataLoader:
        # page-locked batches copy to a GPU asynchronously; on the CPU they only cost memory
        pin = self._device_type() == "cuda" if self.pin_memory is None else self.pin_memory
        return DataLoader(ds, batch_size=batch_size, num_workers=self.num_workers, pin_memory=pin,
                          persistent_workers=self.persistent_workers, worker_init_fn=runtime.worker_init, **kw)

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset("train")
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
        self._batch_augment = self.make_batch_augment() if self.augments_on_device() else None
        if self._batch_augment is not None:  # the workers only slice raw uint8 patches
            ds = CropDataset(ds.array_path, ds.rows, ds.targets, None, ds.seed)
        return self._loader(ds, self.batch_size, sampler=sampler,
                            drop_last=drop_lone_last_batch(len(sampler), self.batch_size))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """``augment_on=gpu``: the 8 symmetries on the training batch, on its device (Lightning hook)."""
        trainer = getattr(self, "trainer", None)
        if self._batch_augment is None or trainer is None or not trainer.training:
            return batch
        epoch, seen = self._batch_count
        seen = seen if epoch == trainer.current_epoch else 0
        self._batch_count = (trainer.current_epoch, seen + 1)
        image = self._batch_augment(batch["image"], trainer.current_epoch, seen, trainer.global_rank)
        return {**batch, "image": image}

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

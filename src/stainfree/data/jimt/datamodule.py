"""Study A (JIMT-1 bright-field windows labelled from PI) as an adapter of the SampleDataModule.

``prepare_data`` builds the JIMT cache (``preprocess``: 8-bit frames, windows, PI means, empty
filter, GMM/fixed labels, by-frame 80/10/10 split per dataset with copies grouped, Table 1,
PI histogram), turns the labelled windows of ``data.dataset`` into the sample table and fills the
shared crop store from the cached 8-bit frames (made by ``pixels``' rule: no second decode).
Everything after the table (loaders, checks, split report, preprocess spec) is the shared one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pytorch_lightning.utilities import rank_zero_only

from stainfree.data.jimt import preprocess
from stainfree.data.jimt.labels import CLASS_NAMES
from stainfree.data.module import SampleDataModule, plain
from stainfree.data.samples import validate_samples
from stainfree.data.spec import Layout, PreprocessSpec
from stainfree.data.store import CropStore, Loader
from stainfree.utils.errors import UserError

TABLE_COLUMNS = ["frame_id", "dataset", "frame_idx", "y", "x", "pi_mean", "empty_score", "label",
                 "target", "split"]


class JimtDataModule(SampleDataModule):
    """Windows of one JIMT-1 dataset (``notreat`` or ``doxo``) split 80/10/10 by raw frame."""

    def __init__(self, manifest: str | Path, dataset: str = "notreat", cache_dir: str | Path = "data/cache/jimt",
                 synthetic: dict | None = None, bf_to8bit: dict | None = None, window: int = 224,
                 stride: int = 224, empty_filter: dict | None = None, labels: dict | None = None,
                 split: dict | None = None, input_size: int = 224, batch_size: int = 4, num_workers: int = 0,
                 pin_memory: bool | None = None, persistent_workers: bool = False, augment: bool = True,
                 augment_on: str = "cpu", weighted_sampler: bool = True, samples_per_epoch: int | None = None, seed: int = 0,
                 num_classes: int = 2, duplicates: dict | None = None, verify: str = "none",
                 report_dir: str | Path | None = None) -> None:
        if int(num_classes) != len(CLASS_NAMES):
            raise UserError(f"data.num_classes={num_classes}, but JIMT-1 has exactly {len(CLASS_NAMES)} "
                             f"classes {CLASS_NAMES}; set data.num_classes: 2")
        self.prep_cfg = preprocess.normalise_config(plain(bf_to8bit), window, stride, plain(empty_filter),
                                                    plain(labels), plain(split), plain(duplicates))
        split_cfg = {k: self.prep_cfg["split"][k] for k in ("train", "val", "test", "seed")}
        super().__init__(input_size=input_size, num_classes=len(CLASS_NAMES), classes=CLASS_NAMES,
                         positive_class="dead", to_8bit=self.prep_cfg["bf_to8bit"], stretch_8bit=True,
                         split=split_cfg, duplicates=duplicates, verify=verify, batch_size=batch_size,
                         num_workers=num_workers, pin_memory=pin_memory, persistent_workers=persistent_workers,
                         augment=augment, augment_on=augment_on, weighted_sampler=weighted_sampler,
                         samples_per_epoch=samples_per_epoch,
                         seed=seed, cache_dir=cache_dir, report_dir=report_dir)
        self.manifest = Path(manifest)
        self.dataset = str(dataset)
        self.synthetic = plain(synthetic)
        self._prepared: preprocess.Prepared | None = None
        self.missing_class_hint = " (the labels config sets which windows are live/dead; see summary.md in the cache)"

    # ---- the adapter's own work -----------------------------------------------------------------
    def ensure_data(self) -> None:
        """Generate the synthetic set if configured and missing (a stale one is refused)."""
        if self.synthetic:
            from stainfree.data.jimt.synthetic import check_existing, generate_dataset

            if self.manifest.is_file():
                check_existing(self.manifest.parent, **self.synthetic)
            else:
                print(f"{self.manifest} not found: generating the synthetic JIMT-1 set {self.synthetic}")
                generate_dataset(self.manifest.parent, **self.synthetic)

    @property
    def prepared(self) -> preprocess.Prepared:
        """The JIMT cache (built or verified and reused once per DataModule)."""
        if self._prepared is None:
            self.ensure_data()
            self._prepared = preprocess.prepare(self.manifest, self.cache_dir, self.prep_cfg, verify=self.verify,
                                                verbose=rank_zero_only.rank == 0)
        return self._prepared

    def load_table(self) -> pd.DataFrame:
        """Labelled windows of ``data.dataset``: one sample per window, group = frame (or its copies)."""
        index = self.prepared.index()
        datasets = sorted(index["dataset"].unique())
        if self.dataset not in datasets:
            raise UserError(f"data.dataset='{self.dataset}' is not in {self.manifest} "
                             f"(datasets there: {datasets}); set data.dataset to one of them")
        frames = self.prepared.frames()
        keep = index[(index["dataset"] == self.dataset) & (index["target"] >= 0)].reset_index(drop=True)
        win = self.prep_cfg["window"]
        fi = keep["frame_idx"].to_numpy()
        table = pd.DataFrame({
            "path": frames["bf_abs"].to_numpy()[fi], "label": keep["label"], "group": keep["group"],
            "split": keep["split"], "x0": keep["x"].astype(float), "y0": keep["y"].astype(float),
            "x1": (keep["x"] + win).astype(float), "y1": (keep["y"] + win).astype(float), "region_kind": "window",
            "sample_id": keep["frame_id"] + "@" + keep["y"].astype(str) + "," + keep["x"].astype(str),
            **{c: keep[c] for c in TABLE_COLUMNS if c not in ("label", "target", "split")},
            "image_hash": frames["bf_hash"].to_numpy()[fi]})
        return validate_samples(table, source=f"manifest {self.manifest}", check_files=False)

    def frame_loader(self) -> Loader:
        """8-bit frames from the JIMT cache's bf8.npy (made with pixels' rule), no second decode."""
        frames = self.prepared.frames().assign(frame_idx=lambda f: np.arange(len(f)))
        first = frames.drop_duplicates("bf_abs").set_index("bf_abs")
        bf8 = np.load(self.prepared.bf8_path, mmap_mode="r")

        def load(path: str, channel: int | None) -> tuple[np.ndarray, str]:
            return np.asarray(bf8[int(first.at[path, "frame_idx"])]), str(first.at[path, "bf_hash"])

        return load

    def dedupe(self, table: pd.DataFrame, store: CropStore) -> pd.DataFrame:
        """Copies were grouped per frame in the JIMT cache (before its split); nothing left to do."""
        return table

    def split_samples(self, table: pd.DataFrame) -> pd.DataFrame:
        """The cache's by-frame 80/10/10 split per dataset (already in the table)."""
        return table

    def finish_spec(self, samples: pd.DataFrame, store: CropStore) -> PreprocessSpec:
        """Windows of the training side, the JIMT empty filter (the SVM file of this cache for ``svm``)."""
        empty = dict(self.prep_cfg["empty_filter"])
        if empty["method"] == "svm":
            empty["svm_path"] = str((self.prepared.folder / "svm.joblib").resolve())
        win = self.prep_cfg["window"]
        base = self.pixel_spec()
        return PreprocessSpec(input_size=base.input_size, channel=base.channel, to_8bit=base.to_8bit,
                              region=base.region, layout=Layout(kind="windows", window=win,
                                                                stride=self.prep_cfg["stride"]),
                              source_scale=float(win), empty_filter=empty)

    # ---- study outputs --------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """Table 1: raw frames, patches, live/dead per split, for every dataset in the manifest."""
        return self.prepared.summary()

    @property
    def pi_thresholds(self) -> dict[str, Any]:
        """Live/dead mean-PI thresholds used for the labels (the PI figures draw them)."""
        thr = self.prepared.thresholds()
        return {"live_below": thr["live_below"], "dead_above": thr["dead_above"]}

    def window_index(self) -> pd.DataFrame:
        """Every window of every dataset (empty and ambiguous ones too): the PI histogram's data."""
        return self.prepared.index()

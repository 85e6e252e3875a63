"""The bench's arms: each builds an :class:`~benchmarks.stats.Arm` whose ``run`` is one timed repetition.

(a) bare step, (b) the real train.py path, the loader alone, predict and CPU preprocessing.
A new arm (e.g. augmentation on the device) is one more builder here: (b) with extra config
overrides is already :func:`train_path_arm` with ``extra=[...]``.
"""
from __future__ import annotations

import inspect
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from benchmarks.stats import Arm, run_for
from stainfree.utils import runtime

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Setup:
    """What every arm of one bench run shares (sizes, device, data config, scratch folder)."""

    device: torch.device
    batch_size: int
    input_size: dict[str, int]
    seconds: float
    warmup: int
    frames: int
    data: str
    work: Path
    compile: bool = False
    overrides: list[str] = field(default_factory=list)
    checkpoints: dict[str, Path] = field(default_factory=dict)

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.gpu:
            torch.cuda.synchronize(self.device)


def compose_train_cfg(overrides: list[str]):
    """The train.py config (same conf/ tree and defaults), composed without launching a Hydra run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} paths resolve as in a real run
    return cfg


def _data_cfg(setup: Setup, input_size: int, batch_size: int, extra: list[str]):
    """Data config as train.py would build it, for the loader-only arm and data preparation."""
    return compose_train_cfg([f"data={setup.data}", f"model.input_size={input_size}",
                              f"data.batch_size={batch_size}", f"paths.output_dir={setup.work / 'data_only'}",
                              *setup.overrides, *extra]).data


def prepare_data(setup: Setup, input_size: int) -> None:
    """Build (or find) the patch store once, so no arm's first repetition pays for it."""
    import hydra

    datamodule = hydra.utils.instantiate(_data_cfg(setup, input_size, setup.batch_size, []), num_workers=0)
    datamodule.prepare_data()
    datamodule.setup("fit")


# ---- (a) bare step ---------------------------------------------------------------------------
def _classifier(name: str, input_size: int, channels_last: bool, compile: bool):  # noqa: A002
    from stainfree.models.classifier import LiveDeadClassifier

    return LiveDeadClassifier(
        backbone=dict(name=name, num_classes=2, in_chans=3, pretrained=False),
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-5, "betas": [0.5, 0.999],
                   "weight_decay": 1e-5},
        input_size=input_size, channels_last=channels_last, compile=compile, class_names=["live", "dead"],
    )


def bare_step_arm(setup: Setup, name: str, threads: int | None = None) -> Arm:
    """(a) forward + loss + backward + Adam on uint8 tensors already on the device: the ceiling.

    ``threads`` None: what the runtime rule gives a step with no loader (every free core), chosen
    again each repetition, like (b)'s, so (b)/(a) compares the same thread count.
    """
    size = setup.input_size[name]
    model = _classifier(name, size, channels_last=setup.gpu, compile=setup.compile)
    model.setup("fit")  # applies channels_last / compile exactly as in training
    model.to(setup.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.5, 0.999), weight_decay=1e-5)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randint(0, 256, (setup.batch_size, 1, size, size), dtype=torch.uint8, generator=gen).to(setup.device)
    y = torch.randint(0, 2, (setup.batch_size,), generator=gen).to(setup.device)

    def step() -> int:
        with torch.autocast(setup.device.type, dtype=torch.bfloat16, enabled=setup.gpu):
            logits = model(x)
            if isinstance(logits, tuple):  # inception aux logits in some timm versions
                logits = logits[0]
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return setup.batch_size

    arm = Arm(f"{name} (a) bare step", "img/s", lambda: (0, 0.0),
              dict(backbone=name, input_size=size, batch_size=setup.batch_size, workers=0))

    def run() -> tuple[int, float]:
        n = threads or runtime.choose(runtime.usable_cores()[0], "cpu", workers=0).threads
        torch.set_num_threads(n)
        arm.settings["threads"] = n
        return run_for(step, setup.seconds, setup.warmup, setup.sync)

    arm.run = run
    return arm


# ---- (b) the train.py path -------------------------------------------------------------------
class TimeBudget(pl.Callback):
    """Counts images after ``warmup`` batches until ``seconds`` have passed, then stops the fit."""

    def __init__(self, warmup: int, seconds: float, sync) -> None:  # noqa: ANN001
        self.warmup, self.seconds, self.sync = warmup, seconds, sync
        self.batches = 0
        self.images = 0
        self.start: float | None = None
        self.elapsed = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.batches += 1
        if self.batches < self.warmup:
            return
        if self.start is None:
            self.sync()
            self.start = time.perf_counter()
            return
        self.images += int(batch["image"].shape[0])
        if time.perf_counter() - self.start >= self.seconds:
            self.sync()
            self.elapsed = time.perf_counter() - self.start
            trainer.should_stop = True


def train_overrides(setup: Setup, name: str, extra: list[str]) -> list[str]:
    gpu = str(setup.gpu).lower()
    return [
        f"data={setup.data}", f"model={name}", f"trainer={'gpu' if setup.gpu else 'cpu'}", "logger=csv",
        "callbacks=none", f"model.input_size={setup.input_size[name]}", "model.backbone.pretrained=false",
        f"model.channels_last={gpu}", f"model.compile={str(setup.compile).lower()}",
        f"data.batch_size={setup.batch_size}", f"data.pin_memory={gpu}",
        f"paths.output_dir={setup.work / f'train_{name}'}",
        # `++`: set whether or not conf/trainer names the key; the time budget stops the fit
        "++trainer.max_steps=100000000", "trainer.max_epochs=-1", "trainer.min_epochs=0",
        "++trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "++trainer.enable_checkpointing=false",
        "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false",
        *setup.overrides, *extra,
    ]


def train_path_once(setup: Setup, name: str, extra: list[str], checkpoint: Path | None = None
                    ) -> tuple[int, float, runtime.Runtime]:
    """One fit of the real path (as stainfree.tasks.train.train builds it) for ``setup.seconds``."""
    import hydra
    from omegaconf import open_dict

    from stainfree.tasks.train import resolved_config

    cfg = compose_train_cfg(train_overrides(setup, name, extra))
    if "persistent_workers" in cfg.data:
        with open_dict(cfg):
            cfg.data.persistent_workers = setup.gpu
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    chosen = runtime.configure(cfg.get("runtime"), *runtime.trainer_placement(cfg.trainer),
                               data_workers=cfg.data.get("num_workers"))
    datamodule = hydra.utils.instantiate(cfg.data, **runtime.loader_kwargs(cfg.data, chosen))
    model = hydra.utils.instantiate(cfg.model)
    budget = TimeBudget(setup.warmup, setup.seconds, setup.sync)
    loggers = [hydra.utils.instantiate(c) for c in (cfg.logger or {}).values() if "_target_" in c]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[budget], logger=loggers or False)
    model.run_metadata = dict(config=resolved_config(cfg), runtime=chosen.as_dict())
    trainer.fit(model=model, datamodule=datamodule)  # the module stores the preprocess settings itself
    if checkpoint is not None:
        trainer.save_checkpoint(checkpoint)
    return budget.images, budget.elapsed, chosen


def train_path_arm(setup: Setup, name: str, threads: int | None = None, workers: int | None = None,
                   extra: list[str] | None = None, label: str = "(b) train path") -> Arm:
    """(b) the Hydra-composed DataModule, augmentation, sampler, Lightning loop and metrics.

    ``threads``/``workers`` None: the runtime rule, as train.py picks them. The first repetition
    also leaves a checkpoint for the predict arm.
    """
    wanted = [f"runtime.{k}={v}" for k, v in (("threads", threads), ("workers", workers)) if v is not None]
    overrides = [*(extra or []), *wanted]
    arm = Arm(f"{name} {label}", "img/s", lambda: (0, 0.0),
              dict(backbone=name, input_size=setup.input_size[name], batch_size=setup.batch_size))

    def run() -> tuple[int, float]:
        checkpoint = None
        if name not in setup.checkpoints:
            checkpoint = setup.work / f"train_{name}" / "bench.ckpt"
        images, seconds, chosen = train_path_once(setup, name, overrides, checkpoint)
        if checkpoint is not None:
            setup.checkpoints[name] = checkpoint
        arm.settings.update(threads=chosen.threads, workers=chosen.workers)
        return images, seconds

    arm.run = run
    return arm


# ---- the loader alone ------------------------------------------------------------------------
def loader_arm(setup: Setup, input_size: int, batch_size: int, workers: int) -> Arm:
    """Patches/s of the train loader (patch store + augmentation + weighted sampler), no model.

    The main process runs 1 torch/OpenCV thread, so workers=0 is the figure of one core.
    """
    import cv2
    import hydra

    extra = ["data.weighted_sampler=true", "data.augment=true", f"data.pin_memory={str(setup.gpu).lower()}"]
    data_cfg = _data_cfg(setup, input_size, batch_size, extra)
    kwargs: dict[str, Any] = {"num_workers": workers}
    accepted = inspect.signature(hydra.utils.get_class(data_cfg._target_)).parameters
    if "persistent_workers" in accepted:
        kwargs["persistent_workers"] = True  # epochs roll over without restarting the workers
    if "samples_per_epoch" in accepted:  # a small store's epoch is a few batches: draw 100 per epoch
        kwargs["samples_per_epoch"] = 100 * batch_size

    def run() -> tuple[int, float]:
        threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        try:
            datamodule = hydra.utils.instantiate(data_cfg, **kwargs)
            datamodule.setup("fit")
            batches = _endless_batches(datamodule)
            try:  # warm-up: the workers' start and their first prefetched batches
                return run_for(lambda: int(next(batches)["image"].shape[0]), setup.seconds, 2 * workers + 1)
            finally:
                batches.close()  # shuts the workers down
        finally:
            torch.set_num_threads(threads)
            cv2.setNumThreads(cv2_threads)

    return Arm(f"loader @{input_size}, {workers} workers", "patches/s", run,
               dict(input_size=input_size, batch_size=batch_size, workers=workers))


def _endless_batches(datamodule: Any):
    """Train batches across as many epochs as the timed window needs, from one loader (as Lightning does)."""
    loader = datamodule.train_dataloader()
    for epoch in itertools.count():
        if hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(epoch)
        yield from loader


# ---- predict and preprocessing ---------------------------------------------------------------
def write_frames(folder: Path, n: int) -> list[Path]:
    """``n`` synthetic 16-bit 1344x1024 bright-field frames (the JIMT-1 camera format) as TIFF."""
    import tifffile

    from stainfree.data.jimt.synthetic import generate_frame

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"frame_{i:03d}.tif"
        tifffile.imwrite(path, generate_frame("notreat", i, seed=123, n_frames=n).bf)
        paths.append(path)
    return paths


def predict_arm(setup: Setup, checkpoint: Path, frames: Path) -> Arm:
    """Raw frames/s of the whole predict() (reading, tiling, inference, CSVs; overlays off), runtime as predict.py."""
    from stainfree.tasks.predict import predict

    calls = itertools.count()
    arm = Arm("predict", "frames/s", lambda: (0, 0.0), dict(batch_size=setup.batch_size))

    def once(workers: int) -> tuple[int, float]:
        summary = predict(checkpoint, frames, setup.work / "predict" / str(next(calls)), device=str(setup.device),
                          batch_size=setup.batch_size, num_workers=workers, overlays=False, progress=False)
        return summary.n_ok, summary.loop_seconds

    def run() -> tuple[int, float]:
        chosen = runtime.configure({}, setup.device.type)
        arm.settings.update(threads=chosen.threads, workers=chosen.workers)
        once(chosen.workers)  # warm-up: model load, first-call allocations
        count, seconds = 0, 0.0
        while seconds < setup.seconds:
            n, s = once(chosen.workers)
            count, seconds = count + n, seconds + s
        return count, seconds

    arm.run = run
    return arm


def preprocess_arm(setup: Setup, paths: list[Path], preprocess: dict[str, Any]) -> Arm:
    """Raw frames/s of read + 8-bit + tiling + empty filter in one process on one core."""
    import cv2

    from stainfree.data.imageio import read_image
    from stainfree.inference.tiling import build_tiler

    tiler = build_tiler(preprocess)
    frames = itertools.cycle(paths)

    def step() -> int:
        tiler(read_image(next(frames)))
        return 1

    def run() -> tuple[int, float]:
        threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        try:
            return run_for(step, setup.seconds, warmup=1)
        finally:
            torch.set_num_threads(threads)
            cv2.setNumThreads(cv2_threads)

    return Arm("CPU preprocessing (1 core)", "frames/s", run, dict(threads=1, workers=0))

"""Throughput benchmark: how close does the real training path come to the bare GPU step?

`make bench` (or `python benchmarks/bench.py`) measures on this machine, in one run:
  (a) images/s of a bare training step on device-resident uint8 tensors (bf16-mixed +
      channels_last on GPU, fp32 on CPU): the ceiling;
  (b) images/s of the real train.py path: the Hydra-composed DataModule from its cached patch
      store, augmentation, weighted sampler, Lightning loop and metrics; and (b)/(a);
  predict throughput (raw frames/s through predict(), tiling + empty filter + inference), and
  CPU preprocessing throughput (raw frames/s read + 8-bit + tiling + empty filter, one process).
Full sizes on a GPU; small sizes on CPU so it ends in a few minutes. Results are printed as a
markdown table and written to benchmarks/results/bench_<time>.{json,md} (never overwritten).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a checkout works without `pip install -e`
from stainfree.utils.cli import CONFIG_DIR, REPO_ROOT, run_cli  # noqa: E402


@dataclass
class Sizes:
    """Benchmark sizes for one device class."""

    batch_size: int
    input_size: dict[str, int]
    steps: int
    warmup: int
    frames: int
    num_workers: int


GPU_SIZES = Sizes(batch_size=256, input_size={"resnet18": 224, "inception_v3": 299}, steps=60, warmup=15,
                  frames=32, num_workers=min(12, os.cpu_count() or 1))
CPU_SIZES = Sizes(batch_size=16, input_size={"resnet18": 64, "inception_v3": 75}, steps=6, warmup=2,
                  frames=4, num_workers=0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _classifier(name: str, input_size: int, channels_last: bool, compile: bool):  # noqa: A002
    from stainfree.models.classifier import LiveDeadClassifier

    return LiveDeadClassifier(
        backbone=dict(name=name, num_classes=2, in_chans=3, pretrained=False),
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-5, "betas": [0.5, 0.999],
                   "weight_decay": 1e-5},
        input_size=input_size, channels_last=channels_last, compile=compile, class_names=["live", "dead"],
    )


def bare_step(name: str, input_size: int, batch_size: int, steps: int, warmup: int, device: torch.device,
              compile: bool = False) -> float:  # noqa: A002
    """(a) images/s of forward + loss + backward + Adam on uint8 tensors already on the device."""
    gpu = device.type == "cuda"
    model = _classifier(name, input_size, channels_last=gpu, compile=compile)
    model.setup("fit")  # applies channels_last / compile exactly as in training
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.5, 0.999), weight_decay=1e-5)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randint(0, 256, (batch_size, 1, input_size, input_size), dtype=torch.uint8, generator=gen).to(device)
    y = torch.randint(0, 2, (batch_size,), generator=gen).to(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            logits = model(x)
            if isinstance(logits, tuple):  # inception aux logits in some timm versions
                logits = logits[0]
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch_size / (time.perf_counter() - start)


class StepTimer(pl.Callback):
    """Images/s between the end of step ``warmup`` and the end of the last step (data waits included)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.images = 0
        self.start: float | None = None
        self.stop: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        _sync(pl_module.device)
        now = time.perf_counter()
        if trainer.global_step == self.warmup:
            self.start = now
        elif self.start is not None:
            self.images += int(batch["image"].shape[0])
            self.stop = now

    @property
    def images_per_second(self) -> float:
        if self.start is None or self.stop is None or self.stop <= self.start:
            return float("nan")
        return self.images / (self.stop - self.start)


def compose_train_cfg(overrides: list[str]):
    """The train.py config (same conf/ tree and defaults), composed without launching a Hydra run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} paths resolve as in a real run
    return cfg


def train_path(name: str, sizes: Sizes, device: torch.device, out_dir: Path, data: str, compile: bool,
               extra: list[str]) -> tuple[float, Path]:
    """(b) images/s of the real training path; returns it and a checkpoint for the predict benchmark."""
    import hydra

    from stainfree.tasks.train import resolved_config

    gpu = device.type == "cuda"
    run_dir = out_dir / f"train_{name}"
    overrides = [
        f"data={data}", f"model={name}", f"trainer={'gpu' if gpu else 'cpu'}", "logger=csv", "callbacks=none",
        f"model.input_size={sizes.input_size[name]}", "model.backbone.pretrained=false",
        f"model.channels_last={str(gpu).lower()}", f"model.compile={str(compile).lower()}",
        f"data.batch_size={sizes.batch_size}", f"data.num_workers={sizes.num_workers}",
        f"data.pin_memory={str(gpu).lower()}",
        f"data.persistent_workers={str(gpu and sizes.num_workers > 0).lower()}", f"paths.output_dir={run_dir}",
        # `++`: set whether or not conf/trainer names the key
        f"++trainer.max_steps={sizes.warmup + sizes.steps}", "trainer.max_epochs=-1",
        "++trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "++trainer.enable_checkpointing=false",
        "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false", *extra,
    ]
    cfg = compose_train_cfg(overrides)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    timer = StepTimer(sizes.warmup)
    loggers = [hydra.utils.instantiate(c) for c in (cfg.logger or {}).values() if "_target_" in c]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[timer], logger=loggers or False)
    model.run_metadata = dict(config=resolved_config(cfg))
    trainer.fit(model=model, datamodule=datamodule)  # the module stores the preprocess settings itself
    ckpt = run_dir / "bench.ckpt"
    trainer.save_checkpoint(ckpt)
    return timer.images_per_second, ckpt


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


def preprocess_throughput(paths: list[Path], preprocess: dict[str, Any]) -> float:
    """Raw frames/s of read + 8-bit + tiling + empty filter in one process (per-core figure)."""
    from stainfree.data.imageio import read_image
    from stainfree.inference.tiling import build_tiler

    tiler = build_tiler(preprocess)
    tiler(read_image(paths[0]))  # warm caches / lazy imports
    start = time.perf_counter()
    for p in paths:
        tiler(read_image(p))
    return len(paths) / (time.perf_counter() - start)


def predict_throughput(ckpt: Path, frames: Path, out: Path, device: torch.device, sizes: Sizes) -> float:
    """Raw frames/s of the whole predict() (reading, tiling, inference, CSVs; overlays off)."""
    from stainfree.tasks.predict import predict

    kw = dict(device=str(device), batch_size=sizes.batch_size, num_workers=sizes.num_workers, overlays=False,
              progress=False)
    predict(ckpt, frames, out / "warmup", **kw)
    summary = predict(ckpt, frames, out / "timed", **kw)
    return summary.frames_per_second


def markdown(rows: list[dict[str, Any]], extras: dict[str, Any]) -> str:
    lines = ["| backbone | input | batch | (a) bare step img/s | (b) train path img/s | (b)/(a) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backbone']} | {r['input_size']} | {r['batch_size']} | {r['bare_img_s']:.1f} | "
                     f"{r['train_img_s']:.1f} | {r['ratio']:.2f} |")
    lines += ["", "| pipeline | raw frames/s |", "|---|---|"]
    lines.append(f"| predict ({extras['predict_backbone']}, {extras['frames']} frames 1344x1024 16-bit) | "
                 f"{extras['predict_frames_s']:.2f} |")
    lines.append(f"| CPU preprocessing (read+8-bit+tiles+empty filter, 1 process) | "
                 f"{extras['preprocess_frames_s']:.2f} |")
    return "\n".join(lines)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} + {os.cpu_count()} CPU cores"
    return f"CPU only ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--models", nargs="+", default=["resnet18", "inception_v3"])
    parser.add_argument("--data", default="demo", help="data config group for (b) (a cached patch store)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone in (a) and (b)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None, help="raw frames for predict/preprocess timing")
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("overrides", nargs="*", help="extra train config overrides for (b), e.g. data.cache=...")
    args = parser.parse_args(argv)

    from stainfree.inference.predictor import resolve_device
    from stainfree.inference.writers import write_json
    from stainfree.models.checkpoint import read_checkpoint_meta
    from stainfree.utils.atomic import atomic_write_text, unique_path

    device = resolve_device(args.device)
    sizes = GPU_SIZES if device.type == "cuda" else CPU_SIZES
    for field, value in (("batch_size", args.batch_size), ("steps", args.steps), ("frames", args.frames),
                         ("num_workers", args.num_workers)):
        if value is not None:
            setattr(sizes, field, value)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rows = []
    ckpts: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="stainfree_bench_") as tmp:
        work = Path(tmp)
        for name in args.models:
            size = sizes.input_size.get(name, 224 if device.type == "cuda" else 64)
            sizes.input_size[name] = size
            print(f"[bench] {name}: (a) bare step ...", flush=True)
            bare = bare_step(name, size, sizes.batch_size, sizes.steps, sizes.warmup, device, args.compile)
            print(f"[bench] {name}: (b) train path ...", flush=True)
            real, ckpts[name] = train_path(name, sizes, device, work, args.data, args.compile, args.overrides)
            rows.append(dict(backbone=name, input_size=size, batch_size=sizes.batch_size, bare_img_s=bare,
                             train_img_s=real, ratio=real / bare))
            print(f"[bench] {name}: (a) {bare:.1f} img/s, (b) {real:.1f} img/s, (b)/(a) {real / bare:.2f}", flush=True)
        print("[bench] predict / preprocessing ...", flush=True)
        frames = write_frames(work / "frames", sizes.frames)
        first = args.models[0]
        preprocess = read_checkpoint_meta(ckpts[first]).preprocess
        extras = dict(frames=sizes.frames, predict_backbone=first,
                      predict_frames_s=predict_throughput(ckpts[first], work / "frames", work / "predict", device,
                                                          sizes) if preprocess else float("nan"),
                      preprocess_frames_s=preprocess_throughput(frames, preprocess) if preprocess else float("nan"))
    table = markdown(rows, extras)
    header = (f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {device_description(device)}; torch {torch.__version__}, "
              f"compile={args.compile}, steps={sizes.steps} after {sizes.warmup} warm-up, "
              f"loader workers={sizes.num_workers}.")
    print("\n" + header + "\n\n" + table)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    payload = dict(device=device_description(device), torch=torch.__version__, compile=args.compile,
                   sizes=asdict(sizes), rows=rows, **extras)
    write_json(args.out / f"bench_{stamp}.json", payload)
    md = unique_path(args.out / f"bench_{stamp}.md")
    atomic_write_text(md, header + "\n\n" + table + "\n")
    print(f"\nwritten: {md}")
    return 0


if __name__ == "__main__":
    run_cli(main)

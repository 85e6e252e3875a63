"""Throughput benchmark: how close does the real training path come to the bare step, and what feeds it?

`make bench` (or `python benchmarks/bench.py`) measures on this machine:
  step     (a) images/s of a bare training step on device-resident uint8 tensors (bf16-mixed +
           channels_last on GPU, fp32 on CPU): the ceiling; (b) images/s of the real train.py
           path (Hydra-composed DataModule from the cached patch store, augmentation, weighted
           sampler, Lightning loop, metrics) at the runtime rule's threads/workers; (b)/(a);
  loader   patches/s of the train loader alone (store + augmentation + sampler, no model) for
           0, 1, 2, 4, ... workers at the GPU input sizes: how many workers a given GPU needs;
  predict  raw frames/s through predict(), and CPU preprocessing raw frames/s on one core;
  grid     (--grid) (b) at the runtime rule's choice and for torch threads x loader workers.
Every arm is repeated (--repeats, >= 3 by default) in turns (a/b/a/b...), each repetition runs
for --seconds (20 s on CPU, 10 s on GPU) after a warm-up; the tables give median (min-max), the
1-min load average around the repetitions, and a warning when (max-min)/median exceeds 10%.
Results go to benchmarks/results/bench_<time>.{json,md} (never overwritten).
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # a checkout works without `pip install -e`
sys.path.insert(0, str(ROOT))  # `benchmarks` as a package when run as a script

from stainfree.utils.cli import run_cli  # noqa: E402
from stainfree.utils.env import configure_offline_environment  # noqa: E402

configure_offline_environment()  # before torch/timm are imported (also when main() is called from a test)

import torch  # noqa: E402

from benchmarks import arms as bench_arms  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.stats import Arm, paired_ratio, run_interleaved  # noqa: E402
from stainfree.models.checkpoint import read_checkpoint_meta  # noqa: E402
from stainfree.utils import runtime  # noqa: E402

ARM_BLOCKS = ("step", "loader", "predict", "grid")
GPU_INPUT = {"resnet18": 224, "inception_v3": 299}
CPU_INPUT = {"resnet18": 64, "inception_v3": 75}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--models", nargs="+", default=None, help="default: resnet18 inception_v3")
    parser.add_argument("--arms", nargs="+", choices=ARM_BLOCKS, default=None,
                        help="blocks to run (default: step loader predict; --grid adds grid)")
    parser.add_argument("--grid", action="store_true", help="also time (b) for threads x workers (the rule's check)")
    parser.add_argument("--data", default="demo", help="data config group (a cached patch store)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone in (a) and (b)")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per arm (default 3)")
    parser.add_argument("--seconds", type=float, default=None, help="timed window per repetition (20 CPU / 10 GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before each window")
    parser.add_argument("--batch-size", type=int, default=None, help="(a)/(b)/predict batch (16 CPU / 256 GPU)")
    parser.add_argument("--frames", type=int, default=None, help="raw frames for predict/preprocessing")
    parser.add_argument("--loader-workers", type=int, nargs="+", default=None, help="default: 0, 1, 2, 4, ... cores")
    parser.add_argument("--loader-sizes", type=int, nargs="+", default=None,
                        help="loader input sizes (default: the models' GPU sizes, 224 / 299)")
    parser.add_argument("--loader-batch-size", type=int, default=256)
    parser.add_argument("--grid-threads", type=int, nargs="+", default=None, help="default: 1, cores/2, cores")
    parser.add_argument("--grid-workers", type=int, nargs="+", default=None, help="default: 0, 1, 2 (<= cores)")
    parser.add_argument("--step-img-s", type=float, nargs="+", default=[],
                        help="extra GPU step rates (img/s, at the loader sizes) to size the workers for")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 short repetitions, small sizes")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("overrides", nargs="*", help="extra train config overrides, e.g. runtime.threads=1")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats={args.repeats}: must be >= 1 (3 or more for figures you quote)")
    if args.seconds is not None and args.seconds <= 0:
        parser.error(f"--seconds={args.seconds}: must be > 0")
    return args


def build_setup(args: argparse.Namespace, device: torch.device, work: Path) -> tuple[bench_arms.Setup, int]:
    """Sizes for this device (or --quick), overridden by the options; returns (setup, repeats)."""
    gpu = device.type == "cuda"
    models = args.models or (["resnet18"] if args.quick else ["resnet18", "inception_v3"])
    sizes = GPU_INPUT if gpu else CPU_INPUT
    defaults: dict[str, Any] = (dict(batch_size=256, seconds=10.0, warmup=15, frames=32, repeats=3) if gpu else
                                dict(batch_size=16, seconds=20.0, warmup=3, frames=4, repeats=3))
    if args.quick:
        defaults.update(batch_size=8, seconds=0.5, warmup=1, frames=1, repeats=2)
    pick = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}
    setup = bench_arms.Setup(device=device, batch_size=pick["batch_size"],
                             input_size={m: sizes.get(m, 224 if gpu else 64) for m in models},
                             seconds=pick["seconds"], warmup=pick["warmup"], frames=pick["frames"], data=args.data,
                             work=work, compile=args.compile, overrides=list(args.overrides))
    return setup, pick["repeats"]


def powers_of_two_upto(n: int) -> list[int]:
    counts, k = [0], 1
    while k < n:
        counts.append(k)
        k *= 2
    return sorted(set(counts + [n]))


def run_step_block(setup: bench_arms.Setup, repeats: int, cores: int) -> list[tuple[Arm, Arm]]:
    pairs = []
    for name in setup.input_size:
        pair = (bench_arms.bare_step_arm(setup, name), bench_arms.train_path_arm(setup, name))
        run_interleaved(pair, repeats)
        pairs.append(pair)
    return pairs


def run_loader_block(setup: bench_arms.Setup, repeats: int, args: argparse.Namespace, cores: int) -> list[Arm]:
    sizes = args.loader_sizes or sorted({GPU_INPUT.get(m, 224) for m in setup.input_size})
    counts = args.loader_workers if args.loader_workers is not None else (
        [0, 1] if args.quick else powers_of_two_upto(cores))
    batch = min(args.loader_batch_size, 32) if args.quick else args.loader_batch_size
    loaders = []
    for size in sizes:
        arms = [bench_arms.loader_arm(setup, size, batch, k) for k in counts]
        run_interleaved(arms, repeats)
        loaders += arms
    return loaders


def run_predict_block(setup: bench_arms.Setup, repeats: int) -> list[Arm]:
    name = next(iter(setup.input_size))
    if name not in setup.checkpoints:  # predict without the step block: a short fit makes the checkpoint
        setup.checkpoints[name] = setup.work / f"train_{name}" / "bench.ckpt"
        bench_arms.train_path_once(setup, name, [], setup.checkpoints[name])
    ckpt = setup.checkpoints[name]
    meta = read_checkpoint_meta(ckpt)
    if not meta.preprocess:
        print(f"[bench] {ckpt} stores no preprocess settings: predict/preprocessing skipped", flush=True)
        return []
    paths = bench_arms.write_frames(setup.work / "frames", setup.frames)
    arms = [bench_arms.predict_arm(setup, ckpt, setup.work / "frames"),
            bench_arms.preprocess_arm(setup, paths, meta.preprocess)]
    arms[0].name = f"predict ({name}, {setup.frames} frames 1344x1024 16-bit)"
    run_interleaved(arms, repeats)
    return arms


def run_grid_block(setup: bench_arms.Setup, repeats: int, args: argparse.Namespace, cores: int) -> list[Arm]:
    name = next(iter(setup.input_size))
    threads = args.grid_threads or sorted({1, max(1, cores // 2), cores})
    workers = args.grid_workers if args.grid_workers is not None else [w for w in (0, 1, 2) if w <= cores]
    # the rule's own arm: it chooses again each repetition, as train.py does at each start
    arms = [bench_arms.train_path_arm(setup, name, label="(b) runtime rule")]
    arms += [bench_arms.train_path_arm(setup, name, threads=t, workers=w, label=f"(b) {t} threads, {w} workers")
             for t in threads for w in workers]
    run_interleaved(arms, repeats)
    return arms


def device_description(device: torch.device, cores: int) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} + {cores} CPU cores"
    return f"CPU only ({platform.processor() or platform.machine()}, {cores} cores)"


def all_arms(blocks: dict[str, list]) -> list[Arm]:
    """Every arm of the run, the step block's (a, b) pairs flattened."""
    return [a for key, items in blocks.items() for item in items
            for a in (item if key == "step" else (item,))]


def compose_report(header: str, blocks: dict[str, list], cores: int, rates: list[report.StepRate]) -> str:
    parts = [header]
    if blocks.get("step"):
        parts.append(report.step_table(blocks["step"]))
    if blocks.get("loader"):
        parts += [report.loader_table(blocks["loader"]),
                  "\n".join(report.workers_needed(blocks["loader"], rates, cores))]
    if blocks.get("predict"):
        parts.append(report.pipeline_table(blocks["predict"]))
    if blocks.get("grid"):
        parts.append(report.grid_table(blocks["grid"]))
    warnings = report.spread_warnings(all_arms(blocks))
    if warnings:
        parts.append("\n".join(warnings))
    return "\n\n".join(p for p in parts if p)


def step_rates(blocks: dict[str, list], setup: bench_arms.Setup, extra: list[float], sizes: list[int]
               ) -> list[report.StepRate]:
    """Rates the loader must feed: the H100 references, this GPU's (a), and any --step-img-s."""
    rates = [report.H100_BARE_STEP[m] for m in setup.input_size if m in report.H100_BARE_STEP]
    if setup.gpu:
        rates += [report.StepRate(f"{bare.name} here", bare.summary.median, bare.settings["input_size"])
                  for bare, _ in blocks.get("step", [])]
    rates += [report.StepRate("--step-img-s", r, s) for r in extra for s in sizes]
    return rates


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from stainfree.inference.predictor import resolve_device
    from stainfree.inference.writers import write_json
    from stainfree.utils.atomic import atomic_write_text, unique_path

    device = resolve_device(args.device)
    cores = runtime.available_cores()
    free, busy = runtime.usable_cores()
    default = replace(runtime.choose(free, device.type), busy=busy)
    runtime.apply(default)  # inter-op threads can be set once per process: here, before any work
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    chosen = set(args.arms or ("step", "loader", "predict")) | ({"grid"} if args.grid else set())
    blocks: dict[str, list] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stainfree_bench_") as tmp:
        setup, repeats = build_setup(args, device, Path(tmp))
        for size in sorted(set(setup.input_size.values())):
            bench_arms.prepare_data(setup, size)
        if "step" in chosen:
            blocks["step"] = run_step_block(setup, repeats, cores)
        if "loader" in chosen:
            blocks["loader"] = run_loader_block(setup, repeats, args, cores)
        if "predict" in chosen:
            blocks["predict"] = run_predict_block(setup, repeats)
        if "grid" in chosen:
            blocks["grid"] = run_grid_block(setup, repeats, args, cores)
    sizes = sorted({a.settings["input_size"] for a in blocks.get("loader", [])})
    rates = step_rates(blocks, setup, args.step_img_s, sizes)
    header = (f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {device_description(device, cores)}; torch "
              f"{torch.__version__}, compile={args.compile}; {repeats} interleaved repetitions of "
              f"{setup.seconds:g} s per arm after {setup.warmup} warm-up steps; runtime rule at start: "
              f"{default.threads} torch threads, {default.workers} loader workers ({busy or 0:.1f} cores busy "
              f"with other jobs); median (min-max); "
              f"load = 1-min load average before/after; bench wall time {time.perf_counter() - started:.0f} s.")
    text = compose_report(header, blocks, cores, rates)
    print("\n" + text)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    payload = dict(device=device_description(device, cores), torch=torch.__version__, compile=args.compile,
                   cores=cores, runtime_default=default.as_dict(), repeats=repeats, seconds=setup.seconds,
                   warmup=setup.warmup, batch_size=setup.batch_size, argv=list(argv or sys.argv[1:]),
                   arms={key: [a.as_dict() for a in all_arms({key: items})] for key, items in blocks.items()},
                   ratios=[dict(backbone=real.settings["backbone"], **paired_ratio(real, bare).as_dict())
                           for bare, real in blocks.get("step", [])],
                   workers_needed=report.workers_needed(blocks.get("loader", []), rates, cores),
                   warnings=report.spread_warnings(all_arms(blocks)))
    write_json(args.out / f"bench_{stamp}.json", payload)
    md = unique_path(args.out / f"bench_{stamp}.md")
    atomic_write_text(md, text + "\n")
    print(f"\nwritten: {md}")
    return 0


if __name__ == "__main__":
    run_cli(main)

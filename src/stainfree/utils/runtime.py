"""Torch threads and loader workers, chosen together so they never fight over the cores.

Why: torch's intra-op pool, OpenCV's pool and every DataLoader worker each assume they own the
machine. On 2 cores the old defaults (2 torch threads + 2 workers, each with its own OpenCV pool)
trained at 7 img/s where 1 thread trained at 26 (issue 13). The rule (README, "Speed"):

- a loader worker is one core: 1 torch thread and 1 OpenCV thread in it (:func:`worker_init`);
- training on the CPU: the model step is the bottleneck and uses every core as torch threads,
  the patches are read in the main process between steps (0 workers): a worker would take a
  whole core from the step to save the loader's few per cent (``make bench`` measures both);
- training on a GPU: the device does the step, so all cores but one are loader workers and the
  main process (Lightning loop, transfers) keeps that one as its torch thread;
- in every case workers + threads <= cores (of this process's share: cores / processes per node),
  where cores = those this process may use (affinity, cgroup quota) less those other jobs keep
  busy when it starts (sampled from /proc/stat): a torch thread that shares its core with another
  job stalls every parallel op of the step (measured on 2 cores at load 5-9: 2 threads trained at
  2.8 img/s, 1 thread at 20 img/s).

Precedence for the loader workers: ``data.num_workers`` (or predict's ``num_workers``) when set,
else ``runtime.workers``, else the rule. Torch threads: ``runtime.threads``, else cores - workers.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from stainfree.utils.errors import UserError
from stainfree.utils.pylogger import get_logger

log = get_logger(__name__)

# accelerators whose training step does not run on the CPU cores
_DEVICE_ACCELERATORS = {"gpu", "cuda", "mps", "tpu", "xla", "hpu"}


class RuntimeSettingError(UserError):
    """A ``runtime.*`` value that cannot be used (the message names the option and the fix)."""


@dataclass(frozen=True)
class Runtime:
    """What this process uses: torch intra-op/inter-op threads and DataLoader worker processes."""

    cores: int
    threads: int
    interop_threads: int
    workers: int
    accelerator: str
    processes: int = 1
    busy: float | None = None  # cores other jobs kept busy at start (None: not sampled)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        share = f"{self.cores} cores" + (f" / {self.processes} processes" if self.processes > 1 else "")
        if self.busy:
            share += f" free ({self.busy:.1f} busy with other jobs)"
        return (f"runtime: {share}, {self.accelerator} step -> {self.threads} torch threads, "
                f"{self.workers} loader workers{'; ' + self.note if self.note else ''}")


def available_cores() -> int:
    """Cores this process may really use: CPU affinity (taskset, Slurm), capped by a cgroup quota (docker --cpus)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_cpu_quota() -> int | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` or v1 ``cfs_quota``; None when unlimited or unknown."""
    candidates = [(Path("/sys/fs/cgroup/cpu.max"), None),
                  (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))]
    for quota_file, period_file in candidates:
        try:
            if period_file is None:
                quota, period = quota_file.read_text().split()[:2]
            else:
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
            if quota in ("max", "-1"):
                return None
            return max(1, math.ceil(int(quota) / int(period)))
        except (OSError, ValueError):
            continue
    return None


def cpu_jiffies(stat_text: str, cpus: set[int]) -> tuple[int, int]:
    """(busy, total) clock ticks summed over ``cpus`` from the text of /proc/stat."""
    busy = total = 0
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        ticks = [int(v) for v in fields[:8]] + [0] * max(0, 8 - len(fields))
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def busy_cores(seconds: float = 0.3) -> float | None:
    """Cores of this process's CPU set kept busy by others over ``seconds`` (None where there is no /proc/stat)."""
    try:
        cpus = set(os.sched_getaffinity(0))
        stat = Path("/proc/stat")
        before = cpu_jiffies(stat.read_text(), cpus)
        time.sleep(seconds)
        after = cpu_jiffies(stat.read_text(), cpus)
    except (AttributeError, OSError, ValueError):
        return None
    total = after[1] - before[1]
    return len(cpus) * (after[0] - before[0]) / total if total > 0 else None


def usable_cores(cores: int | None = None, leave_busy_cores: bool = True) -> tuple[int, float | None]:
    """(cores for the rule, cores found busy): ``runtime.cores`` as given, else the available ones
    less those other jobs keep busy right now (rounded; at least 1)."""
    if cores:
        return int(cores), None
    cores = available_cores()
    busy = busy_cores() if leave_busy_cores else None
    if busy is None:
        return cores, None
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = cores
    return max(1, min(cores, math.floor(allowed - busy + 0.5))), busy


def _check(name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum or number != value:
        raise RuntimeSettingError(f"{name}={value}: must be an integer >= {minimum}, or null for the rule (README: Speed)")
    return number


def choose(cores: int, accelerator: str = "cpu", processes: int = 1, threads: int | None = None,
           workers: int | None = None, interop_threads: int | None = None) -> Runtime:
    """The rule (module docstring) as a pure function: requested values win, the rest fills the share."""
    cores = _check("runtime.cores", cores, 1)
    processes = _check("processes per node", processes, 1) or 1
    threads = _check("runtime.threads", threads, 1)
    workers = _check("runtime.workers", workers, 0)
    interop_threads = _check("runtime.interop_threads", interop_threads, 1)
    share = max(1, cores // processes)
    on_device = accelerator.lower() in _DEVICE_ACCELERATORS
    if workers is None:
        workers = share - 1 if on_device else 0
        if threads is not None:
            workers = min(workers, max(0, share - threads))
    if threads is None:
        threads = max(1, share - workers)
    note = ""
    if threads + workers > share:
        note = (f"{threads} threads + {workers} workers > {share} cores: they compete "
                "(lower runtime.threads or the workers)")
    return Runtime(cores=cores, threads=threads, interop_threads=interop_threads or threads, workers=workers,
                   accelerator="device" if on_device else "cpu", processes=processes, note=note)


def apply(runtime: Runtime) -> None:
    """Set this process's torch and OpenCV thread pools (inter-op only if torch has not started it yet).

    OMP_NUM_THREADS is set too, so processes started from here (``ddp_spawn`` ranks, spawned
    workers) size their pools to the same share instead of the whole machine.
    """
    os.environ["OMP_NUM_THREADS"] = str(runtime.threads)
    torch.set_num_threads(runtime.threads)
    if torch.get_num_interop_threads() != runtime.interop_threads:
        try:
            torch.set_num_interop_threads(runtime.interop_threads)
        except RuntimeError:  # settable once, before any inter-op work: keep the pool torch already has
            log.debug("inter-op threads already started (%d); left as they are", torch.get_num_interop_threads())
    _set_cv2_threads(runtime.threads)


def _set_cv2_threads(n: int) -> None:
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency, but the rule does not need it
        return
    cv2.setNumThreads(n)


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a worker is one core (1 torch + 1 OpenCV thread).

    Setting a worker_init_fn stops Lightning from adding its own, so its per-worker seeding
    (``seed_everything(workers=True)``) is chained here.
    """
    torch.set_num_threads(1)
    _set_cv2_threads(1)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning_fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


def default_workers() -> int:
    """Loader workers for a DataModule built outside train/eval (a notebook): the rule on this machine."""
    accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    return choose(available_cores(), accelerator).workers


def trainer_placement(trainer_cfg: Mapping | None) -> tuple[str, int]:
    """(accelerator, processes on this node) of a ``trainer`` config (``auto`` resolved like Lightning)."""
    cfg = dict(trainer_cfg or {})
    accelerator = str(cfg.get("accelerator") or "auto").lower()
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    devices = cfg.get("devices", 1)
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if not isinstance(devices, (str, int)) and hasattr(devices, "__len__"):  # a list of device ids
        processes = len(devices)
    elif isinstance(devices, int) and devices > 0:
        processes = devices
    elif accelerator in ("gpu", "cuda") and torch.cuda.is_available():  # -1 / "auto": every GPU
        processes = torch.cuda.device_count()
    else:
        processes = 1
    return accelerator, max(1, processes)


def configure(runtime_cfg: Mapping | None, accelerator: str, processes: int = 1,
              data_workers: int | None = None) -> Runtime:
    """Choose (``data_workers`` > ``runtime.workers`` > rule), apply to this process and log one line."""
    cfg = dict(runtime_cfg or {})
    requested = cfg.get("workers")
    if data_workers is not None and requested is not None and int(data_workers) != int(requested):
        log.warning("data.num_workers=%s overrides runtime.workers=%s", data_workers, requested)
    cores, busy = usable_cores(_check("runtime.cores", cfg.get("cores"), 1),
                               bool(cfg.get("leave_busy_cores", True)))
    runtime = choose(cores, accelerator, processes, threads=cfg.get("threads"),
                     workers=data_workers if data_workers is not None else requested,
                     interop_threads=cfg.get("interop_threads"))
    runtime = replace(runtime, busy=busy)
    apply(runtime)
    log.info(runtime.describe())
    return runtime


def loader_kwargs(data_cfg: Mapping | None, runtime: Runtime) -> dict[str, int]:
    """``num_workers`` for instantiating the DataModule, when its config has that option."""
    return {"num_workers": runtime.workers} if data_cfg is not None and "num_workers" in data_cfg else {}

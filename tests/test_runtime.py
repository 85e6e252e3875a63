"""The runtime rule: torch threads and loader workers chosen together (README: Speed)."""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from stainfree.utils import runtime
from stainfree.utils.runtime import RuntimeSettingError, choose


@pytest.mark.parametrize(
    ("cores", "accelerator", "threads", "workers"),
    [
        (2, "cpu", 2, 0),      # CPU step: every core to the model, patches read between steps
        (16, "cpu", 16, 0),
        (2, "gpu", 1, 1),      # device step: all cores but one are workers
        (16, "cuda", 1, 15),
        (1, "gpu", 1, 0),      # one core: nothing left for a worker
        (16, "mps", 1, 15),
    ],
)
def test_default_rule(cores: int, accelerator: str, threads: int, workers: int) -> None:
    chosen = choose(cores, accelerator)
    assert (chosen.threads, chosen.workers) == (threads, workers)
    assert chosen.threads + chosen.workers <= cores
    assert chosen.interop_threads == chosen.threads and not chosen.note


def test_processes_per_node_split_the_cores() -> None:
    chosen = choose(16, "gpu", processes=2)
    assert (chosen.threads, chosen.workers) == (1, 7)
    assert choose(2, "cpu", processes=2).threads == 1


def test_requests_win_and_the_rest_fills_the_share() -> None:
    assert (choose(2, "cpu", workers=1).threads, choose(2, "cpu", workers=1).workers) == (1, 1)
    assert choose(16, "gpu", threads=4).workers == 12  # workers shrink to leave the threads their cores
    assert choose(16, "cpu", threads=4).workers == 0
    assert choose(8, "cpu", interop_threads=2).interop_threads == 2
    both = choose(2, "cpu", threads=2, workers=2)  # honoured, but said to compete
    assert (both.threads, both.workers) == (2, 2) and "compete" in both.note


@pytest.mark.parametrize(("option", "kwargs"), [("runtime.threads", {"threads": 0}),
                                                ("runtime.workers", {"workers": -1}),
                                                ("runtime.interop_threads", {"interop_threads": 1.5}),
                                                ("runtime.cores", {"cores": 0})])
def test_bad_values_name_the_option(option: str, kwargs: dict) -> None:
    with pytest.raises(RuntimeSettingError, match=option.replace(".", r"\.")):
        choose(**{"cores": 2, **kwargs})


STAT = """cpu  300 0 100 500 20 0 0 0 0 0
cpu0 100 0 50 250 10 0 0 0 0 0
cpu1 200 0 50 250 10 0 0 0 0 0
cpu2 0 0 0 1000 0 0 0 0 0 0
intr 12345
"""


def test_cpu_jiffies_counts_busy_ticks_of_our_cpus_only() -> None:
    assert runtime.cpu_jiffies(STAT, {0, 1}) == (400, 920)
    assert runtime.cpu_jiffies(STAT, {2}) == (0, 1000)


@pytest.mark.parametrize(("busy", "cores"), [(0.0, 2), (0.4, 2), (0.6, 1), (1.9, 1), (None, 2)])
def test_usable_cores_leave_the_busy_ones(monkeypatch: pytest.MonkeyPatch, busy: float | None, cores: int) -> None:
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(runtime, "busy_cores", lambda seconds=0.3: busy)
    assert runtime.usable_cores() == (cores, busy)
    assert runtime.usable_cores(leave_busy_cores=False) == (2, None)
    assert runtime.usable_cores(cores=8) == (8, None)  # runtime.cores is taken as given


def test_busy_cores_samples_this_machine() -> None:
    busy = runtime.busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= len(os.sched_getaffinity(0)) + 1e-6


def test_trainer_placement() -> None:
    assert runtime.trainer_placement({"accelerator": "cpu", "devices": 1}) == ("cpu", 1)
    assert runtime.trainer_placement({"accelerator": "gpu", "devices": 2}) == ("gpu", 2)
    assert runtime.trainer_placement({"accelerator": "gpu", "devices": [0, 3, 5]}) == ("gpu", 3)
    assert runtime.trainer_placement({"accelerator": "cpu", "devices": "2"}) == ("cpu", 2)


def test_data_num_workers_wins_over_runtime_workers() -> None:
    before, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    try:
        assert runtime.configure({"workers": 1, "cores": 2}, "cpu", data_workers=0).workers == 0
        chosen = runtime.configure({"workers": 1, "cores": 2}, "cpu", data_workers=None)
        assert chosen.workers == 1 and torch.get_num_threads() == 1  # applied to this process
        assert os.environ["OMP_NUM_THREADS"] == "1"  # and to the processes it starts
    finally:
        torch.set_num_threads(before)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp


def test_train_config_leaves_workers_to_the_runtime(compose_cfg) -> None:
    cfg = compose_cfg(["experiment=demo", "runtime.threads=1"])
    assert cfg.data.num_workers is None and cfg.runtime.threads == 1
    assert runtime.loader_kwargs(cfg.data, choose(2, "cpu", workers=1)) == {"num_workers": 1}


class _ThreadCounts(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        import cv2

        return torch.tensor([torch.get_num_threads(), cv2.getNumThreads()])


def test_worker_init_gives_each_worker_one_core() -> None:
    import cv2

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)  # what a worker would otherwise inherit from the main process
        loader = DataLoader(_ThreadCounts(), batch_size=None, num_workers=1, worker_init_fn=runtime.worker_init)
        for torch_threads, cv2_threads in loader:
            assert (int(torch_threads), int(cv2_threads)) == (1, 1)
    finally:
        cv2.setNumThreads(before)

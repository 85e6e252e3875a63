"""Atomic writes never leave partial files; the environment never prompts, and tests/demo never download."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import ROOT
from stainfree.utils.atomic import atomic_dir, atomic_path, atomic_write_text, unique_path
from stainfree.utils.env import configure_offline_environment, force_offline_downloads, wandb_has_credentials


def test_atomic_path_keeps_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    target.write_text("precious")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_write_refuses_overwrite_when_asked(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a.txt", "one")
    with pytest.raises(FileExistsError, match="a.txt"):
        atomic_write_text(target, "two", overwrite=False)
    assert target.read_text() == "one"


def test_atomic_dir_is_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "cache"
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "x.npy").write_bytes(b"1")
            raise ValueError
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "x.npy").write_bytes(b"1")
    assert (target / "x.npy").read_bytes() == b"1"


def test_unique_path_never_clobbers(tmp_path: Path) -> None:
    first = tmp_path / "report.png"
    assert unique_path(first) == first
    first.write_text("x")
    second = unique_path(first)
    assert second.name == "report_1.png"
    second.write_text("y")
    assert unique_path(first).name == "report_2.png"


def test_offline_environment_without_wandb_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WANDB_API_KEY", "WANDB_MODE", "HF_HUB_OFFLINE", "NO_ALBUMENTATIONS_UPDATE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "missing-netrc"))
    assert not wandb_has_credentials()
    configure_offline_environment()
    assert os.environ["WANDB_MODE"] == "offline"
    assert os.environ["NO_ALBUMENTATIONS_UPDATE"] == "1"
    # weight downloads stay on for users (timm/torchvision fetch into their cache) ...
    assert "HF_HUB_OFFLINE" not in os.environ
    # ... and the tests and the demo switch them off, whatever the user set
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    force_offline_downloads()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE=1 $(PY) train.py experiment=demo" in (ROOT / "Makefile").read_text()  # make demo


def test_wandb_key_keeps_online_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert wandb_has_credentials()
    configure_offline_environment()
    assert "WANDB_MODE" not in os.environ


def test_scale_lr_rules_and_large_batch_configs(compose_cfg) -> None:
    """sqrt/linear rules, bad input refused, and a CLI batch override rescales the recipe's lr."""
    from stainfree.utils.resolvers import scale_lr

    assert scale_lr(1e-3, 32, 128) == pytest.approx(2e-3)
    assert scale_lr(1e-3, 32, 128, "linear") == pytest.approx(4e-3)
    with pytest.raises(ValueError, match="rule"):
        scale_lr(1e-3, 32, 128, "cubic")
    cfg = compose_cfg(["experiment=demo_large_batch", "data.batch_size=128"])
    assert cfg.model.optimizer.lr == pytest.approx(2e-3 * 2)
    paper = compose_cfg(["experiment=notreat_resnet18_large_batch"])
    assert paper.data.batch_size == 256 and paper.model.optimizer.lr == pytest.approx(1e-5 * 8)
    assert paper.trainer.precision == "bf16-mixed" and paper.model.channels_last


def test_atomic_writes_get_umask_permissions_not_private_temp_ones(tmp_path: Path) -> None:
    import stainfree.utils.atomic as atomic

    old = os.umask(0o022)
    atomic._UMASK = None
    try:
        assert atomic_write_text(tmp_path / "a.txt", "x").stat().st_mode & 0o777 == 0o644
        with atomic_dir(tmp_path / "cache") as d:
            (d / "f").write_text("y")
        assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(old)
        atomic._UMASK = None


def test_multirun_flag_moves_before_the_overrides() -> None:
    from stainfree.utils.cli import multirun_flag_first

    argv = ["train.py", "experiment=doxo_inception", "-m", "model=resnet18,squeezenet"]
    assert multirun_flag_first(argv) == ["train.py", "-m", "experiment=doxo_inception", "model=resnet18,squeezenet"]
    assert multirun_flag_first(["train.py", "a=1"]) == ["train.py", "a=1"]
    assert multirun_flag_first(["train.py", "a=1", "--multirun"]) == ["train.py", "--multirun", "a=1"]

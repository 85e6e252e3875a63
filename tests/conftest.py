"""Shared fixtures: Hydra configs composed against temporary folders, offline environment.

No test may touch the network: downloads are switched off by environment (HF_HUB_OFFLINE, W&B
offline), and every Python socket connection or name lookup beyond this machine is refused and
recorded; a test that attempted one fails (``network_attempts`` lets a test expect them).
"""
from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT / "src"))  # this checkout's code, whatever `pip install -e` points at

from stainfree.utils.env import configure_offline_environment, force_offline_downloads  # noqa: E402

configure_offline_environment()
force_offline_downloads()  # no weight downloads (before huggingface_hub is imported)
os.environ["WANDB_MODE"] = "offline"  # tests never log online, whatever the machine has

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict, read_write  # noqa: E402

ComposeConfig = Callable[..., DictConfig]


def _compose(tmp: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` as ``@hydra.main`` hands it to a task, all outputs and data under ``tmp``.

    HydraConfig holds the ``hydra`` node (so ``${hydra:...}`` resolves as in a real single run);
    the returned config has none, like a real task's.
    """
    GlobalHydra.instance().clear()
    run_dir = tmp / "run"
    base = [f"paths.data_dir={tmp / 'data'}", f"paths.log_dir={tmp / 'logs'}", f"hydra.run.dir={run_dir}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True, overrides=base + overrides)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
        cfg.hydra.mode = "RUN"
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.paths.output_dir = str(run_dir)
    return cfg


@pytest.fixture(scope="session")
def compose_cfg_in() -> ComposeConfig:
    """``compose_cfg_in(folder, overrides, config_name="train")``, for fixtures wider than one test."""
    return _compose


@pytest.fixture
def compose_cfg(tmp_path: Path) -> ComposeConfig:
    """``compose_cfg(overrides, config_name="train")``: a task's config with everything under ``tmp_path``."""
    def compose_in_tmp(overrides: list[str], config_name: str = "train") -> DictConfig:
        return _compose(tmp_path, overrides, config_name)

    return compose_in_tmp


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable[..., tuple[Any, str, str]]:
    """``cli(entry, prog, *args) -> (exit status, stdout, stderr)``: a CLI run in-process through run_cli.

    ``entry`` is what the script passes to run_cli (a module name or a callable); the environment,
    ``sys.argv`` and Hydra's global state are restored afterwards.
    """
    from stainfree.utils.cli import run_cli

    def run(entry: str | Callable[[], Any], prog: str, *args: str) -> tuple[Any, str, str]:
        monkeypatch.setattr(sys, "argv", [str(ROOT / prog), *args])
        monkeypatch.setenv("HYDRA_FULL_ERROR", os.environ.get("HYDRA_FULL_ERROR", "0"))  # restored at teardown
        GlobalHydra.instance().clear()
        capsys.readouterr()
        try:
            with pytest.raises(SystemExit) as stop:
                run_cli(entry)
        finally:
            GlobalHydra.instance().clear()
        out = capsys.readouterr()
        return stop.value.code, out.out, out.err

    return run


@pytest.fixture
def shared_dir() -> Path:
    """../shared next to the repo (absent in a user's clone: tests using it skip)."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present (only the project's own machines have it)")
    return SHARED


# ----------------------------------------------------------------------------- no network
_ATTEMPTS: list[str] = []
_LOCAL_NAMES = {"localhost", "", socket.gethostname()}


def _is_local(host: object) -> bool:
    if host is None or isinstance(host, bytes) and not host:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _refuse(target: str) -> OSError:
    _ATTEMPTS.append(target)
    return OSError(101, f"network access refused in tests ({target})")  # ENETUNREACH


def _guarded_getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
    if not _is_local(host):
        _ATTEMPTS.append(f"{host}:{port}")
        raise socket.gaierror(socket.EAI_NONAME, f"name lookup refused in tests ({host})")
    return _real_getaddrinfo(host, port, *args, **kwargs)


def _guarded_connect(self: socket.socket, address, *args):  # type: ignore[no-untyped-def]
    if isinstance(address, tuple) and not _is_local(address[0]):
        raise _refuse(f"{address[0]}:{address[1]}")
    return _real_connect(self, address, *args)


def _guarded_connect_ex(self: socket.socket, address, *args):  # type: ignore[no-untyped-def]
    if isinstance(address, tuple) and not _is_local(address[0]):
        raise _refuse(f"{address[0]}:{address[1]}")
    return _real_connect_ex(self, address, *args)


socket.getaddrinfo = _guarded_getaddrinfo
socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture
def network_attempts() -> list[str]:
    """Hosts this test tried to reach (refused); a test that expects attempts clears the list."""
    return _ATTEMPTS


@pytest.fixture(autouse=True)
def _no_network_attempts() -> Iterator[None]:
    _ATTEMPTS.clear()
    yield
    if _ATTEMPTS:
        attempted = list(_ATTEMPTS)
        _ATTEMPTS.clear()
        pytest.fail(f"the test tried to reach the network: {attempted}")


@pytest.fixture(scope="session", autouse=True)
def _wandb_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Offline W&B runs stage their tables in WANDB_DATA_DIR: keep them out of the user's home."""
    previous = os.environ.get("WANDB_DATA_DIR")
    os.environ["WANDB_DATA_DIR"] = str(tmp_path_factory.mktemp("wandb-data"))
    yield
    if previous is None:
        os.environ.pop("WANDB_DATA_DIR", None)
    else:
        os.environ["WANDB_DATA_DIR"] = previous

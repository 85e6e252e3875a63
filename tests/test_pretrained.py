"""Pretrained weights: the libraries' own downloads when online, the cache when not, one line otherwise.

Every test here runs with empty temporary caches and the network guard of conftest: a download
can only be attempted (and is refused and recorded), never made.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from huggingface_hub import constants

from stainfree.models.backbones import PretrainedWeightsUnavailable, build_backbone

TIMM_FILE = "timm/resnet18.a1_in1k/model.safetensors"
SQUEEZENET_FILE = "squeezenet1_1-b8a52dc0.pth"


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """HF_HOME and TORCH_HOME in tmp_path (huggingface_hub reads its settings once: patch them too)."""
    hf_cache, torch_home = tmp_path / "hf" / "hub", tmp_path / "torch"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    return {"hf": hf_cache, "torch": torch_home / "hub" / "checkpoints"}


def _expected(name: str, caches: dict[str, Path]) -> tuple[str, Path]:
    return (TIMM_FILE, caches["hf"]) if name == "resnet18" else (SQUEEZENET_FILE, caches["torch"])


@pytest.mark.parametrize("name", ["resnet18", "squeezenet"])
def test_offline_without_cache_names_file_folder_and_option(
    name: str, empty_caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch, network_attempts: list[str]
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        build_backbone(name, num_classes=2, pretrained=True)
    message = str(err.value)
    missing, folder = _expected(name, empty_caches)
    assert "\n" not in message
    assert missing in message and str(folder) in message and "HF_HUB_OFFLINE=1" in message
    assert "model.backbone.pretrained_path=" in message and "model.backbone.pretrained=false" in message
    assert network_attempts == []  # offline means not even a name lookup


@pytest.mark.parametrize(("name", "host"), [("resnet18", "huggingface.co"), ("squeezenet", "download.pytorch.org")])
def test_online_path_is_the_library_download(
    name: str, host: str, empty_caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch, network_attempts: list[str]
) -> None:
    """Online (HF_HUB_OFFLINE unset) timm asks the Hugging Face hub and torchvision its weights URL;
    with the network down that attempt fails and the same one line follows."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # the hub retries a failed look-up with back-off (about 23 s per file, 47 s measured for
    # timm's two candidate files): skip the waiting, keep the attempts
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda seconds: None)
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        build_backbone(name, num_classes=2, pretrained=True)
    message = str(err.value)
    missing, folder = _expected(name, empty_caches)
    assert "\n" not in message and missing in message and str(folder) in message and "no network" in message
    assert any(a.startswith(f"{host}:") for a in network_attempts), network_attempts
    network_attempts.clear()  # expected: refused by the guard


def test_cached_weights_load_offline(empty_caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                     network_attempts: list[str]) -> None:
    """A copy in the library's own cache (as a first online run leaves it) is used without the network."""
    from safetensors.torch import save_file

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    source = build_backbone("resnet18", num_classes=1000)
    repo = empty_caches["hf"] / "models--timm--resnet18.a1_in1k"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    weights = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(weights, repo / "snapshots" / commit / "model.safetensors")
    net = build_backbone("resnet18", num_classes=2, pretrained=True)
    assert torch.equal(net.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])

    squeeze = torchvision.models.squeezenet1_1(weights=None)
    empty_caches["torch"].mkdir(parents=True)
    torch.save(squeeze.state_dict(), empty_caches["torch"] / SQUEEZENET_FILE)
    net = build_backbone("squeezenet", num_classes=2, pretrained=True)
    assert torch.equal(net.state_dict()["features.0.weight"], squeeze.state_dict()["features.0.weight"])
    assert network_attempts == []


def test_empty_filter_backbone_follows_the_same_rule(empty_caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                     network_attempts: list[str]) -> None:
    """The JIMT-1 SVM empty filter's feature network: same download rule, its own option named."""
    from stainfree.data.jimt.empty_filter import build_feature_backbone

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        build_feature_backbone({"backbone": "resnet18", "pretrained": True, "pretrained_path": None})
    assert TIMM_FILE in str(err.value) and "data.empty_filter.pretrained_path=" in str(err.value)
    assert network_attempts == []

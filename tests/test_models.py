"""Every model config builds, runs forward/backward, and loads pretrained weights only from disk."""
from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import open_dict

from conftest import ROOT, compose_config
from stainfree.models.backbones import PretrainedWeightsUnavailable, build_backbone
from stainfree.models.classifier import LiveDeadClassifier

MODEL_CONFIGS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("model_name", MODEL_CONFIGS)
def test_model_config_builds_and_trains_one_step(model_name: str, tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, [f"model={model_name}", "data=demo"])
    size = int(cfg.model.input_size)
    model: LiveDeadClassifier = hydra.utils.instantiate(cfg.model)
    assert model.num_classes == 2
    image = torch.randint(0, 256, (2, 1, size, size), dtype=torch.uint8)
    logits = model(image)
    assert logits.shape == (2, 2)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    loss.backward()
    grads = [p.grad for p in model.head_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    feats = model.features(image)
    assert feats.shape == (2, model.net.num_features)


def test_inception_input_is_299(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["model=inception_v3", "data=demo"])
    assert cfg.model.input_size == 299
    assert cfg.data.input_size == 299


def test_grey_single_channel_model(tmp_path: Path) -> None:
    net = build_backbone("squeezenet", num_classes=3, in_chans=1)
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 3)
    feats = build_backbone("resnet18", num_classes=0, in_chans=1)(torch.randn(2, 1, 64, 64))
    assert feats.shape == (2, 512)


def test_pretrained_offline_gives_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    for name in ("resnet18", "squeezenet"):
        with pytest.raises(PretrainedWeightsUnavailable) as err:
            build_backbone(name, num_classes=2, pretrained=True)
        assert "pretrained_path" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["resnet18", "squeezenet"])
def test_pretrained_from_local_file(name: str, tmp_path: Path) -> None:
    """A weights file given by path is loaded (classifier dropped/re-made for the new classes)."""
    source = build_backbone(name, num_classes=1000, in_chans=3)
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)
    net = build_backbone(name, num_classes=2, in_chans=3, pretrained_path=str(path))
    first = next(iter(net.state_dict().items()))
    assert torch.equal(first[1], source.state_dict()[first[0]])


def test_missing_pretrained_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsUnavailable, match="does-not-exist.pth"):
        build_backbone("resnet18", num_classes=2, pretrained_path=str(tmp_path / "does-not-exist.pth"))


def test_compile_keeps_checkpoint_keys(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["model=resnet18", "data=demo", "model.compile=true"])
    model: LiveDeadClassifier = hydra.utils.instantiate(cfg.model)
    keys_before = set(model.state_dict())
    model._features_fn = torch.compile(model.net.forward_features)
    assert set(model.state_dict()) == keys_before
    assert not any("_orig_mod" in k for k in keys_before)

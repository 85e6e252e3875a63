"""Every model config builds, runs forward/backward, and loads pretrained weights from a given file."""
from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch

from stainfree.models.backbones import PretrainedWeightsUnavailable, build_backbone
from stainfree.models.classifier import LiveDeadClassifier

ROOT = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("model_name", MODEL_CONFIGS)
def test_model_config_builds_and_trains_one_step(model_name: str, compose_cfg) -> None:
    # no experiment: each model config at its own input size (Inception 299 px)
    cfg = compose_cfg([f"model={model_name}", "data=demo"])
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


def test_inception_input_is_299(compose_cfg) -> None:
    cfg = compose_cfg(["model=inception_v3", "data=demo"])
    assert cfg.model.input_size == 299
    assert cfg.data.input_size == 299


def test_grey_single_channel_model(tmp_path: Path) -> None:
    net = build_backbone("squeezenet", num_classes=3, in_chans=1)
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 3)
    feats = build_backbone("resnet18", num_classes=0, in_chans=1)(torch.randn(2, 1, 64, 64))
    assert feats.shape == (2, 512)


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


def test_compile_keeps_checkpoint_keys(compose_cfg) -> None:
    cfg = compose_cfg(["model=resnet18", "data=demo", "model.compile=true"])
    model: LiveDeadClassifier = hydra.utils.instantiate(cfg.model)
    keys_before = set(model.state_dict())
    model._features_fn = torch.compile(model.net.forward_features)
    assert set(model.state_dict()) == keys_before
    assert not any("_orig_mod" in k for k in keys_before)


def test_one_cycle_gets_one_peak_per_param_group_from_a_plain_config(compose_cfg) -> None:
    """A config without `_convert_` must still give OneCycleLR plain per-group peaks (body, head)."""
    cfg = compose_cfg(["experiment=demo", "model.body_lr_ratio=0.1"])
    model: LiveDeadClassifier = hydra.utils.instantiate(cfg.model)

    class _Trainer:  # configure_optimizers only asks the trainer for the step count
        estimated_stepping_batches = 10

    model._trainer = _Trainer()  # type: ignore[assignment]
    setup = model.configure_optimizers()
    scheduler = setup["lr_scheduler"]["scheduler"]
    assert isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert setup["lr_scheduler"]["interval"] == "step"
    lr = float(cfg.model.optimizer.lr)
    assert [g["max_lr"] for g in setup["optimizer"].param_groups] == pytest.approx([lr * 0.1, lr])
    assert scheduler.total_steps == 10


def test_squeezenet_loads_torchvision_format_weights(tmp_path: Path) -> None:
    """torchvision's own squeezenet1_1 file (classifier.1.* head) is what users have cached."""
    import torchvision

    source = torchvision.models.squeezenet1_1(weights=None)
    path = tmp_path / "squeezenet1_1.pth"
    torch.save(source.state_dict(), path)
    net = build_backbone("squeezenet", num_classes=2, in_chans=3, pretrained_path=str(path))
    assert torch.equal(net.state_dict()["features.0.weight"], source.state_dict()["features.0.weight"])
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(PretrainedWeightsUnavailable, match="other.pth"):
        build_backbone("squeezenet", num_classes=2, pretrained_path=str(tmp_path / "other.pth"))

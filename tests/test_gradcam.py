"""Grad-CAM: right shape and range on every supported backbone; finds a planted cue on a toy model."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from stainfree.evaluation.gradcam import find_gradcam_layer, gradcam


class _BrightSpotNet(nn.Module):
    """Class 1 = 'has a bright square'. Channel 0 fires on bright pixels, channel 1 on everything.

    Only channel 0 feeds class 1, so Grad-CAM for class 1 must light up the square and nothing else.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=3, padding=1, bias=True)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0] = 1.0 / 9.0
            self.conv.bias[0] = -0.6  # only fires where the neighbourhood is bright
            self.conv.weight[1, 0, 1, 1] = 1.0
            self.conv.bias[1] = 0.5  # fires everywhere: a distractor
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[0.0, 1.0], [5.0, 0.0]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv(x))
        return self.head(a.mean(dim=(2, 3)))


def _planted(y0: int, x0: int, size: int = 8, hw: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = 0.2 * torch.rand(1, 1, hw, hw, generator=g)
    x[..., y0 : y0 + size, x0 : x0 + size] = 1.0
    return x


@pytest.mark.parametrize("y0,x0", [(5, 30), (30, 8)])
def test_gradcam_highlights_planted_square(y0, x0):
    model = _BrightSpotNet()
    images = _planted(y0, x0)
    maps, logits = gradcam(model, images, target_class=1)
    cam = maps[0]
    assert cam.shape == (48, 48)
    inside = torch.zeros_like(cam, dtype=torch.bool)
    inside[y0 : y0 + 8, x0 : x0 + 8] = True
    peak = divmod(int(cam.argmax()), 48)
    assert inside[peak], f"peak {peak} outside the planted square"
    assert cam[inside].sum() / cam.sum() > 0.8  # the energy sits on the cue, not the distractor
    # The distractor class looks everywhere: its map must not concentrate on the square.
    maps0, _ = gradcam(model, images, target_class=0)
    assert maps0[0][inside].sum() / maps0[0].sum() < 0.5


def test_gradcam_batch_and_errors():
    model = _BrightSpotNet()
    images = torch.cat([_planted(5, 30), _planted(30, 8)])
    maps, logits = gradcam(model, images, layer=model.conv, target_class=torch.tensor([1, 1]))
    assert maps.shape == (2, 48, 48) and logits.shape == (2, 2)
    assert divmod(int(maps[1].argmax()), 48)[0] >= 28
    assert model.training  # mode restored
    with pytest.raises(RuntimeError, match="not called"):
        gradcam(model, images, layer=nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="target_class"):
        gradcam(model, images, target_class=5)
    assert find_gradcam_layer(model) is model.conv


def _squeezenet() -> nn.Module:
    net = torchvision.models.squeezenet1_1(weights=None, num_classes=2)
    return net


@pytest.mark.parametrize(
    "name,size,layer_of",
    [
        ("resnet18", 64, lambda m: m.layer4),
        ("resnet50", 64, lambda m: m.layer4),
        ("densenet121", 64, lambda m: m.features),
        ("inception_v3", 128, lambda m: m.Mixed_7c),
        ("squeezenet", 64, lambda m: m.features),
    ],
)
def test_gradcam_on_supported_backbones(name, size, layer_of):
    torch.manual_seed(0)
    if name == "squeezenet":
        model = _squeezenet()
    else:
        model = timm.create_model(name, pretrained=False, num_classes=2)
    for p in model.parameters():  # a frozen body must not stop Grad-CAM
        p.requires_grad_(False)
    images = torch.rand(2, 3, size, size)
    maps, logits = gradcam(model, images, layer=layer_of(model))
    assert maps.shape == (2, size, size)
    assert logits.shape == (2, 2)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    assert torch.isfinite(maps).all()
    assert (maps.flatten(1).amax(dim=1) == 1.0).all()  # normalised per image, not an empty map

"""One factory for every backbone: any timm model name, plus torchvision's SqueezeNet.

Pretrained weights come through the libraries' own downloads into the user's cache, or from a
file (``pretrained_path``); ``stainfree.models.pretrained`` says which and fails in one line.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

from stainfree.models.pretrained import (
    PretrainedWeightsUnavailable,
    create_pretrained_timm,
    load_state_dict,
    squeezenet_state_dict,
)
from stainfree.utils.errors import UserError

SQUEEZENET_NAMES = ("squeezenet", "squeezenet1_1")

__all__ = ["PretrainedWeightsUnavailable", "SqueezeNetClassifier", "build_backbone"]


def build_backbone(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool = False,
    pretrained_path: str | None = None,
    drop_rate: float = 0.0,
    config_key: str = "model.backbone",
) -> nn.Module:
    """Build a classifier network exposing timm's interface.

    ``num_classes=0`` returns a pooled-feature extractor (used by the SVM empty-patch filter).
    ``pretrained_path`` implies ``pretrained``. ``config_key`` is where these options live in the
    config (``data.empty_filter`` for the filter), for the error messages.
    """
    if pretrained_path:
        path = Path(pretrained_path).expanduser()
        if not path.is_file():
            raise PretrainedWeightsUnavailable(
                f"{config_key}.pretrained_path={pretrained_path} does not exist; point it at a .pth/.safetensors file"
            )
        pretrained_path = str(path)
    if name in SQUEEZENET_NAMES:
        return SqueezeNetClassifier(
            num_classes=num_classes,
            in_chans=in_chans,
            drop_rate=drop_rate,
            pretrained=pretrained or bool(pretrained_path),
            pretrained_path=pretrained_path,
            config_key=config_key,
        )
    if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
        raise UserError(f"unknown backbone '{name}': use a timm model name (timm.list_models()) or 'squeezenet'")
    kwargs: dict = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    if pretrained_path:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=pretrained_path), **kwargs)
    if pretrained:
        return create_pretrained_timm(name, config_key, **kwargs)
    return timm.create_model(name, **kwargs)


class SqueezeNetClassifier(nn.Module):
    """torchvision SqueezeNet 1.1 behind timm's interface (timm has no SqueezeNet).

    The head is torchvision's (dropout, 1x1 conv, global average pool) without the final ReLU,
    so logits can be negative: with the ReLU a freshly initialised 2-class head can output
    zeros for every input and never receive a gradient.
    """

    num_features = 512

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        config_key: str = "model.backbone",
    ) -> None:
        super().__init__()
        base = torchvision.models.squeezenet1_1(weights=None)
        if pretrained:
            state = load_state_dict(pretrained_path) if pretrained_path else squeezenet_state_dict(config_key)
            source = pretrained_path or "torchvision's weights"
            base.features.load_state_dict(_squeezenet_features(state, source, config_key))
        if in_chans != 3:
            base.features[0] = _adapt_first_conv(base.features[0], in_chans)
        self.features = base.features
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.head_drop = nn.Dropout(p=drop_rate)
        self.head = nn.Conv2d(self.num_features, num_classes, kernel_size=1) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits or self.num_classes == 0:
            return x.mean(dim=(2, 3))
        return self.head(self.head_drop(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head


def _squeezenet_features(state: dict, source: str, config_key: str) -> dict:
    """The ``features.*`` weights of a SqueezeNet 1.1 state dict: torchvision's own (``classifier.1.*``
    head) or one saved from this class (``head.*``); the head is re-made for the new classes."""
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise PretrainedWeightsUnavailable(
            f"{source} holds no SqueezeNet 'features.*' weights; pass a squeezenet1_1 state dict "
            f"(torchvision's squeezenet1_1-b8a52dc0.pth) as {config_key}.pretrained_path"
        )
    return features


def _adapt_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """Copy of ``conv`` taking ``in_chans`` inputs; RGB filters are summed for grey input."""
    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        mean_filter = conv.weight.sum(dim=1, keepdim=True)
        new.weight.copy_(mean_filter.repeat(1, in_chans, 1, 1) / in_chans if in_chans > 1 else mean_filter)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new

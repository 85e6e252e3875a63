"""One factory for every backbone: any timm model name, plus torchvision's SqueezeNet.

Pretrained weights are only ever read from disk (the timm/Hugging Face cache, the torch hub
cache, or an explicit file): a lab machine or CI without network must fail fast with a fix,
not hang on a download.
"""
from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

from stainfree.utils.errors import UserError

SQUEEZENET_NAMES = ("squeezenet", "squeezenet1_1")


class PretrainedWeightsUnavailable(UserError):
    """Pretrained weights were asked for but no local copy exists."""


def build_backbone(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool = False,
    pretrained_path: str | None = None,
    drop_rate: float = 0.0,
) -> nn.Module:
    """Build a classifier network exposing timm's interface.

    ``num_classes=0`` returns a pooled-feature extractor (used by the SVM empty-patch filter).
    ``pretrained_path`` implies ``pretrained``.
    """
    if pretrained_path:
        path = Path(pretrained_path).expanduser()
        if not path.is_file():
            raise PretrainedWeightsUnavailable(
                f"model.pretrained_path={pretrained_path} does not exist; point it at a .pth/.safetensors file"
            )
        pretrained_path = str(path)
    if name in SQUEEZENET_NAMES:
        return SqueezeNetClassifier(
            num_classes=num_classes,
            in_chans=in_chans,
            drop_rate=drop_rate,
            pretrained=pretrained or bool(pretrained_path),
            pretrained_path=pretrained_path,
        )
    if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
        raise UserError(f"unknown backbone '{name}': use a timm model name (timm.list_models()) or 'squeezenet'")
    kwargs: dict = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    if pretrained or pretrained_path:
        weights_file = pretrained_path or _cached_timm_weights(name)
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=weights_file))
    return timm.create_model(name, **kwargs)


def _cached_timm_weights(name: str) -> str:
    """Path of the locally cached pretrained weights for a timm model, or a one-line error."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise PretrainedWeightsUnavailable(f"timm has no pretrained weights for '{name}'; set model.pretrained=false")
    candidates: list[Path] = []
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in filter(None, (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin")):
            hit = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(hit, str):
                candidates.append(Path(hit))
    if cfg.url:
        candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url))
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise PretrainedWeightsUnavailable(
        f"no local pretrained weights for '{name}' (looked in the Hugging Face and torch hub caches); "
        f"download them once on a machine with network, or pass model.backbone.pretrained_path=<file>, "
        f"or set model.backbone.pretrained=false"
    )


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
    ) -> None:
        super().__init__()
        base = torchvision.models.squeezenet1_1(weights=None)
        if pretrained:
            base.features.load_state_dict(_squeezenet_features(pretrained_path or _cached_squeezenet_weights()))
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


def _cached_squeezenet_weights() -> str:
    url = torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise PretrainedWeightsUnavailable(
            f"no local SqueezeNet weights at {path}; copy squeezenet1_1 weights there, pass "
            f"model.backbone.pretrained_path=<file>, or set model.backbone.pretrained=false"
        )
    return str(path)


def _squeezenet_features(path: str) -> dict:
    """The ``features.*`` weights of a SqueezeNet 1.1 file: torchvision's own (``classifier.1.*``
    head) or one saved from this class (``head.*``); the head is re-made for the new classes."""
    state = _load_state_dict(path)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise PretrainedWeightsUnavailable(
            f"{path} holds no SqueezeNet 'features.*' weights; pass a squeezenet1_1 state dict "
            f"(torchvision's squeezenet1_1-b8a52dc0.pth) as model.backbone.pretrained_path"
        )
    return features


def _load_state_dict(path: str) -> dict:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _adapt_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """Copy of ``conv`` taking ``in_chans`` inputs; RGB filters are summed for grey input."""
    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        mean_filter = conv.weight.sum(dim=1, keepdim=True)
        new.weight.copy_(mean_filter.repeat(1, in_chans, 1, 1) / in_chans if in_chans > 1 else mean_filter)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new

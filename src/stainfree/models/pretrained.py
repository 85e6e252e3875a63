"""Where pretrained weights come from: the libraries' own downloads into the user's cache, or a file.

timm models load through ``timm.create_model(name, pretrained=True)``, which fetches the weights
with huggingface_hub's ``hf_hub_download`` into the Hugging Face cache (older models: torch.hub's
``download_url_to_file`` into the torch hub cache); torchvision's SqueezeNet through its weights
enum, ``SqueezeNet1_1_Weights.IMAGENET1K_V1.get_state_dict()`` (torch.hub's
``load_state_dict_from_url``, torch hub cache). A cached copy is used without the network. With
no network, or with Hugging Face's ``HF_HUB_OFFLINE=1`` (the tests and the demo set it), and no
cached copy, one line names the missing file, the folder it was looked for in and the
``pretrained_path`` option that takes a file instead.
"""
from __future__ import annotations

import os
import socket
import urllib.error
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from stainfree.utils.errors import UserError


class PretrainedWeightsUnavailable(UserError):
    """Pretrained weights were asked for but are neither cached nor downloadable (or the file is bad)."""


@dataclass(frozen=True)
class WeightsFile:
    """One pretrained weights file, named as its library fetches it, and the cache folder it goes to."""

    name: str  # "timm/resnet18.a1_in1k/model.safetensors" (repo id / file) or a URL's file name
    cache: Path
    via_hub: bool = False  # fetched by huggingface_hub, which applies HF_HUB_OFFLINE itself

    @property
    def in_cache(self) -> bool:
        """For URL files: whether the library's cache already holds it (no download then)."""
        return (self.cache / self.name).is_file()


def downloads_disabled() -> bool:
    """Hugging Face's offline switch (``HF_HUB_OFFLINE=1``), applied to URL downloads too."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def _download_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    # the hub turns an unreachable network into LocalEntryNotFoundError; torch.hub raises URLError
    return (LocalEntryNotFoundError, OfflineModeIsEnabled, urllib.error.URLError, ConnectionError,
            TimeoutError, socket.gaierror)


def url_weights_file(url: str) -> WeightsFile:
    """A plain-URL weights file in the torch hub cache (where ``load_state_dict_from_url`` keeps it)."""
    return WeightsFile(os.path.basename(urlparse(url).path), Path(torch.hub.get_dir()) / "checkpoints")


def timm_weights_file(model_name: str, option: str) -> WeightsFile:
    """The file ``timm.create_model(model_name, pretrained=True)`` loads, resolved by timm itself."""
    from huggingface_hub import constants
    from timm.models._builder import _resolve_pretrained_source

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        raise PretrainedWeightsUnavailable(
            f"timm has no pretrained weights for '{model_name}'; set {option}.pretrained=false "
            f"or pass {option}.pretrained_path=<file>"
        )
    load_from, location = _resolve_pretrained_source(cfg.to_dict())
    if load_from == "hf-hub":
        repo, filename = location if isinstance(location, (tuple, list)) else (location, "model.safetensors")
        return WeightsFile(f"{repo}/{filename}", Path(constants.HF_HUB_CACHE), via_hub=True)
    if load_from == "url":
        return url_weights_file(str(location))
    raise PretrainedWeightsUnavailable(
        f"timm's pretrained config for '{model_name}' names no download ({load_from or 'no source'}); "
        f"pass {option}.pretrained_path=<file> or set {option}.pretrained=false"
    )


def unavailable(model_name: str, weights: WeightsFile, option: str, reason: str) -> PretrainedWeightsUnavailable:
    """The one-line error: what is missing, where it was looked for, and the two ways on."""
    return PretrainedWeightsUnavailable(
        f"pretrained weights for '{model_name}' are not available: {weights.name} is not in the cache "
        f"{weights.cache} and cannot be downloaded ({reason}); run once with network to cache it, pass "
        f"{option}.pretrained_path=<.safetensors/.pth file>, or set {option}.pretrained=false"
    )


@contextmanager
def _downloading(model_name: str, weights: WeightsFile, option: str) -> Iterator[None]:
    """Turn the library's download failure into the one-line error (a plain URL file is not even
    requested while downloads are disabled)."""
    if downloads_disabled() and not weights.via_hub and not weights.in_cache:
        raise unavailable(model_name, weights, option, "HF_HUB_OFFLINE=1")
    try:
        yield
    except _download_errors() as exc:
        reason = "HF_HUB_OFFLINE=1" if downloads_disabled() else f"no network: {type(exc).__name__}"
        raise unavailable(model_name, weights, option, reason) from exc


def create_pretrained_timm(model_name: str, option: str = "model.backbone", **kwargs: Any) -> nn.Module:
    """``timm.create_model(model_name, pretrained=True, **kwargs)``: timm downloads (or reads the
    cached copy of) the weights."""
    weights = timm_weights_file(model_name, option)
    with _downloading(model_name, weights, option):
        return timm.create_model(model_name, pretrained=True, **kwargs)


def squeezenet_state_dict(option: str = "model.backbone") -> dict[str, torch.Tensor]:
    """torchvision's ImageNet SqueezeNet 1.1 weights, downloaded by torchvision into the torch hub cache."""
    import torchvision

    enum = torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1
    with _downloading("squeezenet", url_weights_file(enum.url), option):
        return enum.get_state_dict(progress=True, check_hash=True)


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A weights file given by the user: safetensors or a (possibly Lightning-wrapped) torch state dict."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state

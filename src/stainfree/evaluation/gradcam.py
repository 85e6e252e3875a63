"""Grad-CAM (Selvaraju et al. 2017): where in a patch the network looks for its decision.

Implementation choice (why it works for every backbone): a forward hook on the chosen conv layer
replaces the layer's output by a fresh leaf tensor that requires grad, and the rest of the network
runs on a copy of it. The gradient of the class score w.r.t. that leaf is then available even when
the body is frozen, the input is uint8, or a later layer works in place (timm's inplace ReLU,
SqueezeNet's Fire concatenations, DenseNet's BatchNormAct), without touching the model's code.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def find_gradcam_layer(model: nn.Module) -> nn.Module:
    """The layer to hook: ``model.gradcam_layer()`` when the model offers it, else its last Conv2d.

    The last Conv2d is the classic choice for plain CNNs; LightningModules of this project expose
    ``gradcam_layer()`` so block outputs (ResNet ``layer4``, Inception ``Mixed_7c``) can be used.
    """
    getter = getattr(model, "gradcam_layer", None)
    if callable(getter):
        layer = getter()
        if not isinstance(layer, nn.Module):
            raise TypeError(f"{type(model).__name__}.gradcam_layer() returned {type(layer).__name__}, not an nn.Module")
        return layer
    last = None
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            last = module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer; pass the layer to hook explicitly")
    return last


def gradcam(
    model: nn.Module,
    images: torch.Tensor,
    layer: nn.Module | None = None,
    target_class: int | torch.Tensor | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps for ``images`` [B, C, H, W] (any dtype the model's forward accepts).

    ``target_class``: one class for all, a [B] tensor, or None for each image's predicted class.
    ``forward`` defaults to ``model``; pass another callable when logits come from elsewhere.
    Returns ``(maps, logits)``: maps [B, H, W] float in [0, 1] at input resolution (all zeros when
    nothing in the layer raises the class score, all ones when the layer's grid is a single cell),
    logits [B, num_classes] detached.
    The model is run in eval mode and restored to its previous mode afterwards.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    layer = layer if layer is not None else find_gradcam_layer(model)
    forward = forward if forward is not None else model
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise TypeError(
                f"Grad-CAM layer {type(_module).__name__} must output a [B, K, h, w] tensor; "
                "hook a convolutional layer/block instead"
            )
        leaf = output.detach().float().requires_grad_(True)
        captured.append(leaf)
        return leaf.clone().to(output.dtype)

    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(hook)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            logits = forward(images)
            if not captured:
                raise RuntimeError(
                    f"Grad-CAM layer {type(layer).__name__} was not called in the forward pass; "
                    "pass a layer that belongs to this model"
                )
            if logits.ndim != 2:
                raise ValueError(f"model must return logits [B, num_classes], got shape {tuple(logits.shape)}")
            if target_class is None:
                cls = logits.argmax(dim=1)
            elif isinstance(target_class, int):
                cls = torch.full((logits.shape[0],), target_class, dtype=torch.long, device=logits.device)
            else:
                cls = torch.as_tensor(target_class, device=logits.device).long().reshape(-1)
            if cls.shape[0] != logits.shape[0] or (cls < 0).any() or (cls >= logits.shape[1]).any():
                raise ValueError(f"target_class must name one of {logits.shape[1]} classes per image")
            activation = captured[-1]
            score = logits.gather(1, cls[:, None]).sum()
            (grads,) = torch.autograd.grad(score, activation)
    finally:
        handle.remove()
        model.train(was_training)

    weights = grads.mean(dim=(2, 3), keepdim=True)  # [B, K, 1, 1]: importance of each channel
    cam = F.relu((weights * activation.detach()).sum(dim=1, keepdim=True))  # [B, 1, h, w]
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values[:, None, None]
    low = cam.flatten(1).min(dim=1).values[:, None, None]
    span = peak - low
    # Min-max per image; a flat positive map (e.g. a 1x1 feature grid) means "everywhere alike".
    flat = span <= 1e-4 * peak.abs().clamp_min(1e-12)  # float noise on a flat map is not signal
    scaled = (cam - low) / span.clamp_min(1e-30)
    maps = torch.where(flat, (peak > 0).float().expand_as(cam), scaled)
    return maps.clamp(0.0, 1.0).detach().cpu(), logits.detach().cpu()

"""Process-wide settings that keep every entry point quiet and safe without a network.

Called first thing by train/eval/predict: nothing prompts (W&B logs offline without an API key)
and nothing phones home for update checks. Pretrained weights are the one download: timm and
torchvision fetch them into the user's cache when the network is there, and Hugging Face's own
``HF_HUB_OFFLINE=1`` (``force_offline_downloads``: the tests, ``make demo``) turns that off.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path


def wandb_has_credentials() -> bool:
    """True when a W&B API key is configured (env var or ~/.netrc), i.e. online logging can work."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        rc = netrc.netrc(os.environ.get("NETRC", str(Path.home() / ".netrc")))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any(rc.authenticators(host) for host in ("api.wandb.ai",))


def configure_offline_environment() -> None:
    """Set env vars so no library phones home or prompts; user settings win.

    Weight downloads stay on (see the module docstring); must run before huggingface_hub is
    imported, which reads ``HF_HUB_OFFLINE`` once.
    """
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("WANDB_SILENT", "true")
    if not wandb_has_credentials():
        os.environ.setdefault("WANDB_MODE", "offline")


def force_offline_downloads() -> None:
    """No weight downloads at all, whatever the user's settings (tests, the demo).

    ``HF_HUB_OFFLINE`` is Hugging Face's own switch (timm obeys it through the hub); the backbone
    factory applies the same switch to torchvision's and timm's plain-URL weights. Call it before
    huggingface_hub is imported.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"

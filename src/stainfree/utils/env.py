"""Process-wide settings that keep every entry point offline-safe and quiet.

Called first thing by train/eval/predict: nothing may reach for the network (weights, update
checks, W&B login prompts) on a lab workstation or in CI.
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
    """Set env vars so no library downloads, phones home or prompts; user settings win."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_SILENT", "true")
    if not wandb_has_credentials():
        os.environ.setdefault("WANDB_MODE", "offline")

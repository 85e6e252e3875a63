"""Calibrated probabilities and OOD verdicts for predict's rows, from ONE backbone pass per batch.

The checkpoint's trust blocks (``calibration``: the temperature fitted on validation; ``ood``: the
reference of ``stainfree.trust.scoring``) turn into columns here, so predict's loop makes one call
per image:

    trusted = TrustedClassifier(model, meta, device, batch_size, amp_dtype)
    result = trusted(tiles)                  # probs (calibrated), logits, patch + image columns

``p(<class>)`` columns are ``softmax(logits / T)`` (T = 1 without a calibration block); the raw
``logit(<class>)`` columns stay next to them, so ``softmax(logits)`` is always recoverable.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from stainfree.trust.calibration import softmax
from stainfree.trust.scoring import NO_REFERENCE, OODScorer

IMAGE_COLUMNS = ("ood_score", "ood_flag", "ood_check", "ood_reason")


@dataclass
class TrustedResult:
    """One image: ``probs``/``logits`` [N, C] (NaN rows for empty patches) and the columns to add."""

    probs: np.ndarray
    logits: np.ndarray
    patch_columns: dict[str, np.ndarray] = field(default_factory=dict)
    image_columns: dict[str, Any] = field(default_factory=dict)


def logit_columns(class_names: list[str]) -> list[str]:
    return [f"logit({c})" for c in class_names]


class TrustedClassifier:
    """The model plus its checkpoint's temperature and OOD reference (either may be absent)."""

    def __init__(self, model: torch.nn.Module, meta: Mapping[str, Any], device: torch.device,
                 batch_size: int = 64, amp_dtype: torch.dtype | None = None) -> None:
        self.model, self.device, self.batch_size, self.amp_dtype = model, device, batch_size, amp_dtype
        self.class_names = [str(c) for c in meta["class_names"]]
        self.temperature = float((meta.get("calibration") or {}).get("temperature", 1.0))
        self.scorer = OODScorer.from_meta(meta)

    @property
    def calibrated(self) -> bool:
        return self.temperature != 1.0

    def notes(self) -> list[str]:
        """What the user should know about this checkpoint's trust blocks (for the run's warnings)."""
        return [] if self.scorer is not None else [f"no OOD flags: {NO_REFERENCE}"]

    @torch.inference_mode()
    def logits_and_features(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw logits [N, C] and penultimate features [N, d] of uint8 patches [N, S, S], in batches."""
        logits, feats = [], []
        for start in range(0, len(patches), self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(patches[start:start + self.batch_size])).unsqueeze(1)
            chunk = chunk.to(self.device, non_blocking=self.device.type == "cuda")
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                lg, ft = self.model.logits_and_features(chunk)
            logits.append(lg.float().cpu())
            feats.append(ft.float().flatten(1).cpu())
        if not logits:
            return np.zeros((0, len(self.class_names)), np.float32), np.zeros((0, 0), np.float32)
        return torch.cat(logits).numpy(), torch.cat(feats).numpy()

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated softmax (float32); T = 1 leaves the model's own softmax."""
        if len(logits) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return softmax(logits, self.temperature).astype(np.float32)

    def __call__(self, tiles: Any) -> TrustedResult:
        """Classify the non-empty patches of one tiled image and score it (needs ``tiles.raw`` for OOD)."""
        n, c = len(tiles.empty), len(self.class_names)
        keep = ~np.asarray(tiles.empty, bool)
        logits = np.full((n, c), np.nan, np.float32)
        probs = np.full((n, c), np.nan, np.float32)
        feats = np.zeros((0, 0), np.float32)
        if keep.any():
            logits[keep], feats = self.logits_and_features(tiles.patches[keep])
            probs[keep] = self.probabilities(logits[keep])
        patch_cols: dict[str, np.ndarray] = {col: logits[:, j] for j, col in enumerate(logit_columns(self.class_names))}
        if self.scorer is None or tiles.raw is None:
            image_cols = dict(ood_score=math.nan, ood_flag=False, ood_check="", ood_reason="")
            patch_cols.update(ood_score=np.full(n, np.nan), ood_flag=np.zeros(n, bool))
            return TrustedResult(probs, logits, patch_cols, image_cols)
        verdict = self.scorer.score(tiles.raw, tiles.frame8, feats, tiles.empty)
        flagged = sorted((f for f in verdict.findings if f.flagged), key=lambda f: -f.severity)
        image_cols = dict(verdict.image_columns(), ood_check=flagged[0].check if flagged else "")
        patch_cols.update(verdict.patch_columns())
        return TrustedResult(probs, logits, patch_cols, image_cols)


def _first_reason(reason: str) -> str:
    return reason.split("; ")[0].strip()


def ood_summary_line(images: pd.DataFrame) -> str | None:
    """'4 of 6 images look unlike the training data (<most common reason>)', or None when none is flagged.

    Images are grouped by the check that flagged them first (their worst); the reason shown is that
    of the median-scored image of the most common check, so the line names a typical case.
    """
    if "ood_flag" not in images or not images["ood_flag"].astype(bool).any():
        return None
    flagged = images[images["ood_flag"].astype(bool)]
    checks = flagged["ood_check"] if "ood_check" in flagged else flagged["ood_reason"].map(
        lambda r: re.sub(r"[\d.]+", "#", _first_reason(r)))
    common, count = Counter(checks).most_common(1)[0]
    group = flagged[checks == common].sort_values("ood_score")
    example = _first_reason(str(group["ood_reason"].iloc[len(group) // 2]))
    lead = "" if count == len(flagged) else f"most common, {count} of them: "
    noun = "image looks" if len(images) == 1 else "images look"
    return f"{len(flagged)} of {len(images)} {noun} unlike the training data ({lead}{example})"

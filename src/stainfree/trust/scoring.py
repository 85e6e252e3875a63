"""Score new images against a checkpoint's OOD reference: the API predict.py calls per image.

    scorer = OODScorer.from_meta(meta)            # once per run; None when the checkpoint has no reference
    verdict = scorer.score(raw, tiles.frame8, features, tiles.empty)
    images_row.update(verdict.image_columns())     # ood_score, ood_flag, ood_reason
    patches_table = patches_table.assign(**verdict.patch_columns())

``score_image(meta, model, raw, tiles)`` does the same in one call, computing the features itself.
Scores are normalised so that 1.0 is the threshold of the check: ``ood_flag = ood_score > 1``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from stainfree.trust.image_stats import image_statistics
from stainfree.trust.input_contract import Finding, check_input
from stainfree.trust.mahalanobis import mahalanobis_distance

NO_REFERENCE = "checkpoint has no OOD reference (run eval.py on it to make a calibrated copy with one)"


@dataclass
class ImageVerdict:
    """One image's OOD result.

    ``patch_score``: Mahalanobis distance / patch threshold per patch (NaN for empty patches);
    ``ood_score``: the largest normalised score over all checks (features and input contract);
    ``ood_reason``: the failed checks' reasons, worst first ('' when not flagged).
    """

    patch_score: np.ndarray
    patch_flag: np.ndarray
    ood_score: float
    ood_flag: bool
    ood_reason: str
    findings: list[Finding] = field(default_factory=list)

    def image_columns(self) -> dict[str, Any]:
        return dict(ood_score=self.ood_score, ood_flag=self.ood_flag, ood_reason=self.ood_reason)

    def patch_columns(self) -> dict[str, np.ndarray]:
        return dict(ood_score=self.patch_score, ood_flag=self.patch_flag)


def _median_or_nan(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else math.nan


class OODScorer:
    """Built once from a checkpoint's ``stainfree`` metadata (needs its ``ood`` and ``preprocess`` blocks)."""

    def __init__(self, meta: Mapping[str, Any]) -> None:
        ood = meta.get("ood")
        if not ood:
            raise ValueError(NO_REFERENCE)
        if not meta.get("preprocess"):
            raise ValueError("checkpoint metadata has no 'preprocess' block: the model-input scale is unknown")
        self.preprocess = dict(meta["preprocess"])
        self.input_ref = ood["input"]
        feats = ood["features"]
        self.features_ref = dict(feats, means=torch.as_tensor(feats["means"]).double().numpy(),
                                 precision=torch.as_tensor(feats["precision"]).double().numpy())
        self.dim = int(self.features_ref["means"].shape[1])
        self.patch_threshold = float(feats["patch_threshold"])
        self.image_threshold = float(feats["image_threshold"])

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> "OODScorer | None":
        """The scorer, or None when the checkpoint carries no OOD reference (older checkpoints)."""
        return cls(meta) if meta and meta.get("ood") and meta.get("preprocess") else None

    def patch_scores(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance / patch threshold, flag) per feature row."""
        if len(features) == 0:
            return np.zeros(0), np.zeros(0, bool)
        score = mahalanobis_distance(features, self.features_ref) / self.patch_threshold
        return score, score > 1.0

    def _feature_finding(self, distances: np.ndarray) -> Finding:
        if len(distances) == 0:
            return Finding("features", 0.0, "")
        median = _median_or_nan(distances)
        beyond = float(np.mean(distances > self.patch_threshold))
        return Finding("features", median / self.image_threshold,
                       f"features unlike training: median patch distance {median:.1f} vs {self.image_threshold:.1f} "
                       f"allowed ({beyond:.0%} of patches beyond the validation 99th percentile)")

    def score(self, raw: np.ndarray, frame8: np.ndarray, features: np.ndarray,
              empty: np.ndarray | None = None) -> ImageVerdict:
        """Score one image: ``raw`` as read, ``frame8`` its 8-bit model-path frame, ``features`` of its
        non-empty patches in order ([n_nonempty, d]), ``empty`` the tiler's flags for all patches."""
        features = np.asarray(features, dtype=np.float64)
        features = features.reshape(len(features), -1) if len(features) else np.zeros((0, self.dim))
        empty = np.zeros(len(features), bool) if empty is None else np.asarray(empty, bool)
        if int((~empty).sum()) != len(features):
            raise ValueError(f"{len(features)} feature rows for {int((~empty).sum())} non-empty patches")
        score, flag = self.patch_scores(features)
        patch_score = np.full(len(empty), np.nan)
        patch_flag = np.zeros(len(empty), bool)
        patch_score[~empty], patch_flag[~empty] = score, flag
        findings = check_input(image_statistics(raw, frame8, self.preprocess), self.input_ref)
        findings.append(self._feature_finding(score * self.patch_threshold))
        worst = sorted(findings, key=lambda f: -f.severity)
        ood_score = max(f.severity for f in findings)
        reason = "; ".join(f.reason for f in worst if f.flagged)
        return ImageVerdict(patch_score, patch_flag, float(ood_score), bool(ood_score > 1.0), reason, findings)


def score_image(meta: Mapping[str, Any], model: torch.nn.Module, raw: np.ndarray, tiles: Any,
                features: np.ndarray | None = None, batch_size: int = 64) -> ImageVerdict:
    """One call for one image: ``tiles`` is the checkpoint tiler's output for ``raw``
    (``frame8``, ``patches``, ``empty``). Pass ``features`` of the non-empty patches when the
    caller already has them (``model.logits_and_features``), else they are computed here."""
    scorer = OODScorer(meta)
    if features is None:
        from stainfree.trust.features import patch_logits_and_features

        _, features = patch_logits_and_features(model, tiles.patches[~tiles.empty], batch_size)
    return scorer.score(raw, tiles.frame8, features, tiles.empty)

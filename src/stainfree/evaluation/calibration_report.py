"""The calibration section of an evaluation report: ECE/NLL before and after the checkpoint's
temperature on the evaluated split, and the reliability diagram (used by evaluation/report.py)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from stainfree.trust import calibration
from stainfree.utils.pylogger import get_logger

log = get_logger(__name__)


def report_logits(outputs: Mapping[str, Any]) -> np.ndarray:
    """The pass's logits; log-probabilities stand in when only probabilities were kept (softmax of
    log p / T equals softmax of logits / T: the per-row constant cancels)."""
    if outputs.get("logits") is not None:
        return torch.as_tensor(outputs["logits"]).double().numpy()
    probs = torch.as_tensor(outputs["probs"]).double().numpy()
    return np.log(np.clip(probs, 1e-300, None))


def calibration_section(module: Any, outputs: Mapping[str, Any], out_path: Path,
                        title: str) -> tuple[dict[str, Any], Path | None]:
    """(metrics['calibration'], reliability PNG). Without a fitted temperature only 'before' is reported."""
    meta = (getattr(module, "run_metadata", None) or {}).get("calibration") or {}
    temperature = float(meta.get("temperature", 1.0))
    fitted = bool(meta)
    logits = report_logits(outputs)
    target = torch.as_tensor(outputs["target"]).long().numpy()
    m = calibration.calibration_metrics(logits, target, temperature)
    section: dict[str, Any] = dict(calibrated=fitted, temperature=temperature if fitted else None,
                                   n_bins=m["n_bins"], ece_before=m["ece_before"], nll_before=m["nll_before"])
    curves = {f"raw softmax (ECE {m['ece_before']:.3f})": calibration.reliability_bins(calibration.softmax(logits),
                                                                                       target)}
    if fitted:
        section.update(ece_after=m["ece_after"], nll_after=m["nll_after"],
                       val={k: meta[k] for k in meta if k != "temperature"})
        curves[f"T = {temperature:.2f} (ECE {m['ece_after']:.3f})"] = calibration.reliability_bins(
            calibration.softmax(logits, temperature), target)
    if fitted:
        log.info("calibration on %d samples: ECE %.4f -> %.4f with T = %.3f (fitted on validation)",
                 m["n"], m["ece_before"], m["ece_after"], temperature)
    if len(target) == 0 or not math.isfinite(m["ece_before"]):
        return section, None
    from stainfree.evaluation.plots import plot_reliability

    figure = plot_reliability(curves, out_path, title=f"Reliability ({title})")
    return section, figure


def calibrated_columns(module: Any, outputs: Mapping[str, Any], class_names: list[str]) -> dict[str, np.ndarray]:
    """``p_cal_<class>`` columns (softmax of logits / T) when the module carries a fitted temperature."""
    meta = (getattr(module, "run_metadata", None) or {}).get("calibration") or {}
    if not meta:
        return {}
    probs = calibration.softmax(report_logits(outputs), float(meta["temperature"]))
    return {f"p_cal_{name}": probs[:, i] for i, name in enumerate(class_names)}

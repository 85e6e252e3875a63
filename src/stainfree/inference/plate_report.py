"""Plate-level outputs of predict: wells.csv, dose_response_<compound>.png/json, zprime.json.

A failed curve fit or missing controls are facts about the experiment, not bugs: they are
written into the reports and the run's warnings instead of aborting after inference is done.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from stainfree.inference.dose_response import DoseResponseError, fit_dose_response, plot_dose_response
from stainfree.inference.platemap import match_images
from stainfree.inference.wells import well_dead_fractions
from stainfree.inference.writers import write_csv, write_json
from stainfree.inference.zprime import ZPrimeError, z_prime_from_wells
from stainfree.utils.atomic import unique_path


def plate_report(plate: pd.DataFrame, images: pd.DataFrame, out_dir: Path, plate_path: str | os.PathLike,
                 warnings: list[str], n_boot: int = 2000, seed: int = 0) -> dict[str, str]:
    """Write the per-well table and, where the plate map allows, dose-response fits and Z'.

    ``images`` is the per-image table with ``sum_p_dead``; messages for the user are appended to
    ``warnings``. Returns {label: path} of the files written.
    """
    files: dict[str, str] = {}
    matched = match_images(plate, images["image"].tolist(), plate_path)
    if matched.attrs.get("unmatched"):
        missing = matched.attrs["unmatched"]
        warnings.append(f"{len(missing)} plate-map image(s) were not predicted (missing or unreadable): "
                        f"{missing[:5]}{' ...' if len(missing) > 5 else ''}")
    unmapped = sorted(set(images["image"]) - set(matched["image_key"]))
    if unmapped:
        warnings.append(f"{len(unmapped)} predicted image(s) are not in the plate map: {unmapped[:5]}")
    wells = well_dead_fractions(images, matched, n_boot=n_boot, seed=seed)
    files["wells"] = write_csv(out_dir / "wells.csv", wells)
    fits = []
    dosed = wells[wells["dose"].notna() & (wells["control"] == "")]
    for compound, group in dosed.groupby("compound", sort=True):
        entry = {"compound": compound}
        try:
            fit = fit_dose_response(group["dose"], group["dead_fraction"], str(compound), limits=(0.0, 1.0))
            entry.update(fit.to_dict())
        except DoseResponseError as exc:
            fit = None
            entry["error"] = str(exc)
            warnings.append(str(exc))
        if (group["dose"] > 0).any():
            png = unique_path(out_dir / f"dose_response_{_safe(str(compound))}.png")
            plot_dose_response(png, group["dose"].to_numpy(), group["dead_fraction"].to_numpy(), fit,
                               group["ci_low"].to_numpy(), group["ci_high"].to_numpy())
            files[f"dose_response_{compound}"] = str(png)
            entry["plot"] = str(png)
        fits.append(entry)
    if fits:
        files["dose_response"] = write_json(out_dir / "dose_response.json", {"fits": fits})
    if (wells["control"] != "").any():
        try:
            report = z_prime_from_wells(wells)
        except ZPrimeError as exc:
            report = {"z_prime": None, "error": str(exc),
                      "n_pos_wells": int((wells["control"] == "pos").sum()),
                      "n_neg_wells": int((wells["control"] == "neg").sum())}
            warnings.append(f"Z': {exc}")
        files["zprime"] = write_json(out_dir / "zprime.json", report)
    return files


def _safe(name: str) -> str:
    """Compound name -> file-name-safe token."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "compound"

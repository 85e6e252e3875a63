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
                 warnings: list[str], n_boot: int = 2000, seed: int = 0, exclude_ood: bool = True) -> dict[str, str]:
    """Write the per-well table and, where the plate map allows, dose-response fits and Z'.

    ``images`` is the per-image table with ``sum_p_dead`` (and ``ood_flag`` when scored); messages
    for the user are appended to ``warnings``. With ``exclude_ood`` images flagged as unlike the
    training data are left out of wells, fits and Z' (each well counts them in ``n_excluded_ood``);
    otherwise they are kept and counted in ``n_ood``. Returns {label: path} of the files written.
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
    flagged = images["ood_flag"].astype(bool) if "ood_flag" in images else pd.Series(False, index=images.index)
    used = _per_cell(images[~flagged] if exclude_ood else images)
    wells = well_dead_fractions(used, matched, n_boot=n_boot, seed=seed)
    wells = _count_flagged(wells, matched, images[flagged], exclude_ood)
    if exclude_ood and flagged.any():
        warnings.append(f"{int(flagged.sum())} image(s) flagged as unlike the training data were left out of "
                        "wells.csv, dose-response and Z' (see n_excluded_ood; ood_exclude=false keeps them)")
    files["wells"] = write_csv(out_dir / "wells.csv", wells)
    fits = []
    scored = wells[wells["dead_fraction"].notna()]  # a well whose images were all excluded has none
    dosed = scored[scored["dose"].notna() & (scored["control"] == "")]
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
            report = z_prime_from_wells(scored)
        except ZPrimeError as exc:
            report = {"z_prime": None, "error": str(exc),
                      "n_pos_wells": int((scored["control"] == "pos").sum()),
                      "n_neg_wells": int((scored["control"] == "neg").sum())}
            warnings.append(f"Z': {exc}")
        files["zprime"] = write_json(out_dir / "zprime.json", report)
    return files


def _per_cell(images: pd.DataFrame) -> pd.DataFrame:
    """For a cell-trained model (images.csv has n_cells) wells pool cells, not windows: the well
    table's n_patches / n_dead then count cells."""
    if "n_cells" not in images:
        return images
    return images.assign(n_patches=images["n_cells"], n_empty=0, n_dead=images["n_dead_cells"],
                         sum_p_dead=images["mean_p_dead_cells"].fillna(0.0) * images["n_cells"])


def _count_flagged(wells: pd.DataFrame, matched: pd.DataFrame, flagged: pd.DataFrame,
                   excluded: bool) -> pd.DataFrame:
    """Add ``n_excluded_ood`` (or ``n_ood`` when kept) per well; a well whose every image was
    excluded still gets its row, with no dead fraction."""
    column = "n_excluded_ood" if excluded else "n_ood"
    counts = matched[matched["image_key"].isin(set(flagged["image"]))].groupby("well").size()
    missing = sorted(set(counts.index) - set(wells["well"])) if excluded else []
    if missing:
        info = matched.drop_duplicates("well").set_index("well").loc[missing, ["compound", "dose", "control"]]
        empty = info.reset_index().assign(n_images=0, n_patches=0, n_dead=0)
        wells = pd.concat([wells, empty], ignore_index=True).sort_values("well", ignore_index=True)
    wells[column] = wells["well"].map(counts).fillna(0).astype(int)
    return wells


def _safe(name: str) -> str:
    """Compound name -> file-name-safe token."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "compound"

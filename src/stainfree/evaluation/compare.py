"""Compare the runs of a multirun: one table of test metrics with intervals, one overlaid ROC figure.

``python -m stainfree.evaluation.compare logs/train/multiruns/<time> [--out DIR]`` reads each job's
``eval/metrics.json`` and ``eval/predictions.csv`` (written by the EvalReport callback or
eval.py) and ``.hydra/overrides.yaml`` for the job's name; no W&B needed (the paper's Figure 4a).
"""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import yaml

from stainfree.evaluation import plots
from stainfree.utils.atomic import atomic_path, atomic_write_text, unique_path
from stainfree.utils.cli import run_cli
from stainfree.utils.errors import MissingPathError, UserError
from stainfree.utils.overrides import describing_overrides, distinct_overrides, shared_overrides


class NoRunsFound(MissingPathError):
    """The folder holds no evaluated runs."""


@dataclass
class RunResult:
    """One evaluated run: where it is, what it is called and its metrics/predictions."""

    job_dir: Path
    report_dir: Path
    name: str
    metrics: dict
    predictions: pd.DataFrame | None
    config: dict


def _report_dirs(job_dir: Path) -> list[Path]:
    pattern = re.compile(r"^eval(_\d+)?$")
    return sorted(
        (p for p in job_dir.iterdir() if p.is_dir() and pattern.match(p.name) and (p / "metrics.json").is_file()),
        key=lambda p: int(p.name.split("_")[1]) if "_" in p.name else 0,
    )


def _read_yaml(path: Path) -> object:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc}); repair or delete it") from exc


def run_name(job_dir: Path, root: Path) -> str:
    """Hydra overrides that define the job (``model=resnet18 data.x=1``), else its folder name."""
    overrides = _read_yaml(job_dir / ".hydra" / "overrides.yaml")
    if isinstance(overrides, list):
        kept = describing_overrides(overrides)
        if kept:
            return " ".join(kept)
    rel = job_dir.relative_to(root) if job_dir != root else Path(job_dir.name)
    return str(rel)


def _drop_shared_overrides(runs: list[RunResult]) -> None:
    """Name each run by the overrides that differ between runs (``-m model=a,b`` -> ``model=a``)."""
    split = [r.name.split(" ") for r in runs]
    shared = shared_overrides(split)
    for run, parts in zip(runs, split):
        run.name = " ".join(distinct_overrides(parts, shared))


def find_runs(root: str | Path) -> list[RunResult]:
    """Every job folder under ``root`` with an ``eval*/metrics.json`` (latest report per job)."""
    root = Path(root)
    if not root.is_dir():
        raise NoRunsFound(f"{root}: no such folder; pass a multirun folder such as logs/train/multiruns/<time>")
    job_dirs = sorted({p.parent.parent for p in root.rglob("metrics.json") if re.match(r"^eval(_\d+)?$", p.parent.name)})
    runs = []
    for job_dir in job_dirs:
        report_dir = _report_dirs(job_dir)[-1]
        try:
            metrics = json.loads((report_dir / "metrics.json").read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{report_dir / 'metrics.json'}: not valid JSON ({exc}); re-run eval.py for this job") from exc
        for key in ("bal_acc", "bal_acc_ci", "n"):
            if key not in metrics:
                raise UserError(f"{report_dir / 'metrics.json'}: no '{key}'; it was not written by stainfree's report")
        pred_path = report_dir / "predictions.csv"
        predictions = pd.read_csv(pred_path) if pred_path.is_file() else None
        config = _read_yaml(job_dir / ".hydra" / "config.yaml")
        runs.append(RunResult(job_dir, report_dir, run_name(job_dir, root), metrics, predictions,
                              config if isinstance(config, dict) else {}))
    _drop_shared_overrides(runs)
    if not runs:
        raise NoRunsFound(
            f"{root}: no eval/metrics.json below it; train with the eval_report callback or run "
            "`python eval.py ckpt_path=...` for each job first"
        )
    return runs


def _dataset(run: RunResult) -> str:
    if run.predictions is not None and "dataset" in run.predictions:
        return ",".join(sorted(map(str, run.predictions["dataset"].dropna().unique())))
    cfg = run.config
    return str(cfg.get("experiment_name") or (cfg.get("data") or {}).get("dataset") or "")


def _model(run: RunResult) -> str:
    return str(run.metrics.get("backbone") or ((run.config.get("model") or {}).get("backbone") or {}).get("name") or "")


def comparison_table(runs: Sequence[RunResult]) -> pd.DataFrame:
    """One row per run: model, dataset, n, balanced accuracy with its interval, AUROC, accuracy."""
    rows = []
    for run in runs:
        m, ci = run.metrics, run.metrics["bal_acc_ci"]
        row = dict(
            run=run.name, model=_model(run), dataset=_dataset(run), n=int(m["n"]),
            bal_acc=m["bal_acc"], bal_acc_lower=ci["lower"], bal_acc_upper=ci["upper"],
            ci_level=ci.get("level", 0.95), auroc=m.get("auroc"), acc=m.get("acc"),
        )
        if m.get("pearson_r") is not None:
            row["pearson_r"] = m["pearson_r"]
        row["report_dir"] = str(run.report_dir)
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(value: object, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def markdown_table(table: pd.DataFrame) -> str:
    """GitHub markdown: the papers' "balanced accuracy (95% CI)" column plus AUC and accuracy."""
    level = int(round(100 * float(table["ci_level"].iloc[0]))) if len(table) else 95
    has_r = "pearson_r" in table
    header = ["run", "model", "dataset", "n", f"bal. acc. [{level}% CI]", "AUC", "acc."] + (["Pearson r"] if has_r else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in table.iterrows():
        cells = [
            str(r["run"]).replace("|", "/"), str(r["model"]), str(r["dataset"]), str(r["n"]),
            f"{_fmt(r['bal_acc'])} [{_fmt(r['bal_acc_lower'])}, {_fmt(r['bal_acc_upper'])}]",
            _fmt(r["auroc"]), _fmt(r["acc"]),
        ] + ([_fmt(r.get("pearson_r"))] if has_r else [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def roc_overlay_inputs(runs: Sequence[RunResult]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per run, the ROC input from its predictions.csv (binary: p(class 1); else micro-average)."""
    curves = {}
    for run in runs:
        pred = run.predictions
        names = list(run.metrics.get("class_names") or [])
        if pred is None or not names or "target" not in pred:
            continue
        cols = [f"p_{n}" for n in names]
        if not set(cols) <= set(pred.columns):
            continue
        target = pred["target"].to_numpy(dtype=np.int64)
        if len(np.unique(target)) < 2:
            continue
        curves[run.name] = plots.micro_roc_input(pred[cols].to_numpy(), target, len(names))
    return curves


def compare(root: str | Path, out: str | Path | None = None) -> dict[str, Path]:
    """Write comparison.md, comparison.csv and roc_overlay.png; returns their paths."""
    root = Path(root)
    runs = find_runs(root)
    out_dir = Path(out) if out else root / "comparison"
    if out_dir.exists() and any(out_dir.iterdir()):
        out_dir = unique_path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = comparison_table(runs)
    paths = {"csv": out_dir / "comparison.csv", "md": out_dir / "comparison.md"}
    with atomic_path(paths["csv"]) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(paths["md"], f"# Test metrics of {len(runs)} runs in {root}\n\n" + markdown_table(table))
    curves = roc_overlay_inputs(runs)
    if curves:
        multi = any(len(r.metrics.get("class_names") or []) > 2 for r in runs)
        positive = "" if multi else f" ({runs[0].metrics['class_names'][1]} = positive)"
        paths["roc"] = plots.plot_roc(
            curves, out_dir / "roc_overlay.png",
            title=f"ROC on the test split{positive}" + (" — micro-average" if multi else ""),
        )
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stainfree.evaluation.compare", description=__doc__.split("\n")[0])
    parser.add_argument("root", help="a multirun folder (logs/train/multiruns/<time>) or any folder of run folders")
    parser.add_argument("--out", default=None, help="output folder (default: <root>/comparison)")
    args = parser.parse_args(argv)
    paths = compare(args.root, args.out)  # a missing folder or a folder without runs: NoRunsFound
    print((paths["md"]).read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)

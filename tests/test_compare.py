"""Run comparison on fabricated multirun folders: table, markdown and ROC overlay, no W&B."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stainfree.evaluation.compare import compare, find_runs, main
from stainfree.evaluation.metrics import compute_metrics


def _fake_job(job_dir, model: str, quality: float, seed: int, report: str = "eval") -> dict:
    """A job folder as train.py + EvalReport leave it (metrics.json, predictions.csv, overrides)."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 2, 200)
    p_dead = np.clip(0.5 + quality * (target - 0.5) + rng.normal(0, 0.25, 200), 0, 1)
    probs = np.stack([1 - p_dead, p_dead], axis=1)
    metrics = compute_metrics(probs, target, ["live", "dead"])
    metrics["backbone"] = model
    out = job_dir / report
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame(dict(target=target, p_live=probs[:, 0], p_dead=probs[:, 1], dataset="notreat")).to_csv(
        out / "predictions.csv", index=False
    )
    (job_dir / ".hydra").mkdir(exist_ok=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(
        f"- experiment=notreat_resnet18\n- model={model}\n- paths.log_dir=/somewhere\n"
    )
    (job_dir / ".hydra" / "config.yaml").write_text(f"experiment_name: notreat\nmodel:\n  backbone:\n    name: {model}\n")
    return metrics


def test_compare_writes_table_and_overlay(tmp_path, capsys):
    root = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    expected = {}
    for i, (model, q) in enumerate([("resnet18", 0.6), ("squeezenet", 0.3), ("inception_v3", 0.8)]):
        expected[model] = _fake_job(root / str(i), model, q, seed=i)
    (root / "3").mkdir()  # a crashed job without a report is not an error
    # A re-evaluated job: the latest report (eval_1) counts.
    newer = _fake_job(tmp_path / "scratch", "inception_v3", 0.9, seed=7)
    (root / "2" / "eval_1").mkdir()
    for name in ("metrics.json", "predictions.csv"):
        (root / "2" / "eval_1" / name).write_bytes((tmp_path / "scratch" / "eval" / name).read_bytes())
    expected["inception_v3"] = newer

    paths = compare(root)
    table = pd.read_csv(paths["csv"])
    assert list(table["model"]) == ["resnet18", "squeezenet", "inception_v3"]
    # the overrides every job shares (experiment=...) are left out of the names
    assert list(table["run"]) == [f"model={m}" for m in table["model"]]
    for _, row in table.iterrows():
        m = expected[row["model"]]
        assert row["bal_acc"] == pytest.approx(m["bal_acc"])
        assert row["bal_acc_lower"] == pytest.approx(m["bal_acc_ci"]["lower"])
        assert row["auroc"] == pytest.approx(m["auroc"])
        assert row["dataset"] == "notreat" and row["n"] == 200
    md = paths["md"].read_text()
    m = expected["squeezenet"]
    assert f"{m['bal_acc']:.3f} [{m['bal_acc_ci']['lower']:.3f}, {m['bal_acc_ci']['upper']:.3f}]" in md
    assert md.count("\n| model=") == 3
    assert paths["roc"].read_bytes()[:4] == b"\x89PNG"
    # Running it again keeps the first comparison and writes a new folder.
    again = compare(root)
    assert again["csv"].parent.name == "comparison_1" and paths["csv"].is_file()
    assert len(find_runs(root)) == 3  # comparison folders are not mistaken for runs


def test_compare_cli_errors_clearly_on_empty_folder(tmp_path, cli):
    code, _, err = cli(main, "compare.py", str(tmp_path))
    assert code == 2 and err.startswith("compare.py: error: ") and "no eval/metrics.json" in err
    assert err.count("\n") == 1
    code, _, err = cli(main, "compare.py", str(tmp_path / "missing"))
    assert code == 2 and "no such folder" in err and err.count("\n") == 1


def test_compare_cli_prints_table(tmp_path, cli):
    _fake_job(tmp_path / "0", "resnet18", 0.5, seed=0)
    code, out, _ = cli(main, "compare.py", str(tmp_path), "--out", str(tmp_path / "cmp"))
    assert code == 0 and "resnet18" in out and (tmp_path / "cmp" / "comparison.md").is_file()

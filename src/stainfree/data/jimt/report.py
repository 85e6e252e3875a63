"""Human-readable outputs of preprocessing: the paper's Table 1 and the PI histogram."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stainfree.data.jimt.labels import Thresholds

TABLE1_COLUMNS = ["dataset", "raw", "windows", "empty", "ambiguous", "patches", "live", "dead",
                  "train_live", "train_dead", "val_live", "val_dead", "test_live", "test_dead"]


def table1(index: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """Counts per dataset: raw frames, windows, removed (empty/ambiguous), kept patches, per split L/D."""
    rows = []
    for dataset in sorted(frames["dataset"].unique()):
        sub = index[index["dataset"] == dataset]
        kept = sub[sub["target"] >= 0]
        row = {"dataset": dataset, "raw": int((frames["dataset"] == dataset).sum()),
               "windows": len(sub), "empty": int(sub["empty"].sum()),
               "ambiguous": int(((sub["target"] < 0) & ~sub["empty"]).sum()), "patches": len(kept),
               "live": int((kept["target"] == 0).sum()), "dead": int((kept["target"] == 1).sum())}
        for split in ("train", "val", "test"):
            s = kept[kept["split"] == split]
            row[f"{split}_live"] = int((s["target"] == 0).sum())
            row[f"{split}_dead"] = int((s["target"] == 1).sum())
        rows.append(row)
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)


def table1_markdown(summary: pd.DataFrame) -> str:
    """The summary in the paper's layout (train/val/test as live/dead pairs)."""
    lines = ["| dataset | raw | patches | live | dead | train L/D | val L/D | test L/D | removed empty | removed ambiguous |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples(index=False):
        lines.append(f"| {r.dataset} | {r.raw:,} | {r.patches:,} | {r.live:,} | {r.dead:,} | "
                     f"{r.train_live:,}/{r.train_dead:,} | {r.val_live:,}/{r.val_dead:,} | "
                     f"{r.test_live:,}/{r.test_dead:,} | {r.empty:,} | {r.ambiguous:,} |")
    return "\n".join(lines) + "\n"


def pi_histogram(index: pd.DataFrame, thresholds: Thresholds, path: Path) -> None:
    """Histogram of non-empty patch mean PI per dataset, with the live/dead threshold lines."""
    from matplotlib.figure import Figure  # no pyplot: no global state, works headless

    usable = index[~index["empty"]]
    fig = Figure(figsize=(7, 4), dpi=120)
    ax = fig.add_subplot()
    values = usable["pi_mean"].to_numpy()
    hi = float(np.percentile(values, 99.5)) if values.size else 1.0
    bins = np.linspace(float(values.min()) if values.size else 0.0, max(hi, thresholds.dead_above * 1.2), 80)
    for dataset, sub in usable.groupby("dataset"):
        ax.hist(sub["pi_mean"].clip(upper=bins[-1]), bins=bins, alpha=0.5, label=f"{dataset} (n={len(sub)})")
    ax.axvline(thresholds.live_below, color="tab:green", ls="--", label=f"live < {thresholds.live_below:.1f}")
    ax.axvline(thresholds.dead_above, color="tab:red", ls="--", label=f"dead > {thresholds.dead_above:.1f}")
    ax.set_xlabel("patch mean PI (raw intensity)")
    ax.set_ylabel("patches")
    ax.set_title(f"Patch mean PI ({thresholds.method} thresholds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)

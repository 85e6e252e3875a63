"""Synthetic JIMT-1 bright-field (BF) + propidium-iodide (PI) frames, deterministic from a seed.

Why: the real frames are not redistributable, yet the whole pipeline (tiling, empty filter, PI
labels, training) must run and be testable anywhere. The generator reproduces what matters for
that pipeline: 1344x1024 16-bit frames, uneven illumination, camera noise, empty areas, varied
density, and a BF morphology that predicts PI only imperfectly. Each cell carries a "deadness"
score drawn from overlapping live/dead distributions (PI-positive cells that still look healthy,
rounded mitotic live cells), so a good CNN reaches a balanced accuracy near 0.9, not 1.0.

Each cell is rendered inside its own bounding box with numpy array ops (no per-pixel loops).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tifffile

from stainfree.utils.atomic import atomic_dir

FRAME_SHAPE = (1024, 1344)  # rows x cols of a 1344x1024 camera frame
DATASETS = ("notreat", "doxo")
_DATASET_CODE = {"notreat": 0, "doxo": 1}
EXAMPLE_WINDOW = 224
GENERATOR_FILE = "generator.json"  # the arguments a folder was generated with


@dataclass(frozen=True)
class DatasetProfile:
    """What distinguishes the two treatments at the level of a frame.

    ``dead_beta``: Beta parameters of the per-frame fraction of PI-positive cells, so some
    frames are mostly live and others crowded with dead cells (as in real wells).
    ``cells``: log-uniform range of cells per frame (density varies a lot between fields).
    """

    dead_beta: tuple[float, float]
    cells: tuple[float, float]
    empty_frame_fraction: float
    empty_region_prob: float


PROFILES: dict[str, DatasetProfile] = {
    "notreat": DatasetProfile(dead_beta=(2.0, 8.0), cells=(30.0, 110.0),
                              empty_frame_fraction=0.08, empty_region_prob=0.4),
    "doxo": DatasetProfile(dead_beta=(6.0, 3.0), cells=(25.0, 80.0),
                           empty_frame_fraction=0.06, empty_region_prob=0.35),
}

# Morphology "deadness" s in [0, 1]: 0 = spread healthy cell, 1 = contracted, rounded dead cell.
LIVE_DEADNESS = (2.0, 8.0)     # Beta for ordinary live cells
DEAD_DEADNESS = (6.0, 2.0)     # Beta for ordinary PI-positive cells
MITOTIC_FRACTION = 0.03        # live cells that round up for mitosis (look dead-ish, PI negative)
MITOTIC_DEADNESS = (0.45, 0.75)
EARLY_DEAD_FRACTION = 0.08     # PI-positive cells that still look healthy (membrane just broke)
# Integrated PI counts of one dead nucleus: a whole one inside a 224x224 window lifts the window
# mean by ~350 above the ~200 background, matching the paper's dead mode (550 +- 154).
PI_PER_DEAD_CELL = 350.0 * 224 * 224


@dataclass
class SyntheticFrame:
    """One rendered field: raw 16-bit BF and PI, the cell table, and the cell footprint mask."""

    bf: np.ndarray          # uint16 [H, W]
    pi: np.ndarray          # uint16 [H, W]
    cells: pd.DataFrame     # one row per cell (ground truth, for debugging and tests)
    coverage: np.ndarray    # bool [H, W]: pixels touched by a cell or its halo


def _frame_plan(dataset: str, n_frames: int, seed: int) -> pd.DataFrame:
    """Frame-level draws (emptiness, density, dead fraction) from one dataset-level RNG."""
    prof = PROFILES[dataset]
    rng = np.random.default_rng([seed, _DATASET_CODE[dataset], 7919])
    n_empty = int(round(prof.empty_frame_fraction * n_frames)) if n_frames >= 4 else 0
    if n_frames >= 8:
        n_empty = max(1, n_empty)
    empty = np.zeros(n_frames, bool)
    empty[rng.choice(n_frames, size=n_empty, replace=False)] = True
    lo, hi = np.log(prof.cells[0]), np.log(prof.cells[1])
    n_cells = np.where(empty, 0, np.round(np.exp(rng.uniform(lo, hi, n_frames)))).astype(int)
    dead_frac = rng.beta(*prof.dead_beta, n_frames)
    empty_region = rng.random(n_frames) < prof.empty_region_prob
    return pd.DataFrame({"empty": empty, "n_cells": n_cells, "dead_fraction": dead_frac,
                         "empty_region": empty_region})


def _illumination(rng: np.random.Generator, shape: tuple[int, int], strength: float) -> np.ndarray:
    """Smooth multiplicative field: off-centre vignetting plus a linear tilt (uneven lamp)."""
    h, w = shape
    y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    cy, cx = rng.uniform(-0.4, 0.4, 2)
    vignette = rng.uniform(0.10, 0.30) * strength
    gy, gx = rng.uniform(-0.08, 0.08, 2) * strength
    field = 1.0 - vignette * ((y - cy) ** 2 + (x - cx) ** 2) / 2.0 + gy * y + gx * x
    return field.astype(np.float32)


def _place_cells(rng: np.random.Generator, n: int, shape: tuple[int, int], empty_region: bool,
                 clustered: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres: a ``clustered`` fraction in colonies, the rest scattered, avoiding an optional empty area."""
    h, w = shape
    if n == 0:
        return np.zeros(0), np.zeros(0)
    # Empty area: a half-plane cut at a random angle, covering 20-45% of the field.
    nrm = rng.normal(size=2)
    nrm /= np.linalg.norm(nrm)
    cut = rng.uniform(0.2, 0.6)
    n_clusters = rng.integers(1, 6)
    centres = rng.uniform([0, 0], [h, w], size=(n_clusters, 2))
    spread = rng.uniform(70, 200, n_clusters)
    ys, xs = [], []
    need, tries = n, 0
    while need > 0 and tries < 20:
        m = need * 2
        in_colony = rng.random(m) < clustered
        k = rng.integers(0, n_clusters, m)
        pts = np.where(in_colony[:, None],
                       centres[k] + rng.normal(size=(m, 2)) * spread[k, None],
                       rng.uniform([0, 0], [h, w], size=(m, 2)))
        ok = (pts[:, 0] >= 0) & (pts[:, 0] < h) & (pts[:, 1] >= 0) & (pts[:, 1] < w)
        if empty_region:
            rel = (pts / [h, w]) * 2 - 1
            ok &= rel @ nrm < cut
        pts = pts[ok][:need]
        ys.append(pts[:, 0])
        xs.append(pts[:, 1])
        need -= len(pts)
        tries += 1
    return np.concatenate(ys), np.concatenate(xs)


def _cell_table(rng: np.random.Generator, n: int, dead_fraction: float, shape: tuple[int, int],
                empty_region: bool) -> pd.DataFrame:
    """Draw every cell's attributes; morphology follows deadness, PI follows membrane state."""
    # Live cells grow in colonies; dead cells detach and end up scattered, one per few windows.
    n_dead = rng.binomial(n, dead_fraction)
    ly, lx = _place_cells(rng, n - n_dead, shape, empty_region, clustered=0.6)
    ey, ex = _place_cells(rng, n_dead, shape, empty_region, clustered=0.1)
    cy, cx = np.concatenate([ly, ey]), np.concatenate([lx, ex])
    dead = np.concatenate([np.zeros(len(ly), bool), np.ones(len(ey), bool)])
    n = len(cy)
    s = np.where(dead, rng.beta(*DEAD_DEADNESS, n), rng.beta(*LIVE_DEADNESS, n))
    mitotic = ~dead & (rng.random(n) < MITOTIC_FRACTION)
    s = np.where(mitotic, rng.uniform(*MITOTIC_DEADNESS, n), s)
    early = dead & (rng.random(n) < EARLY_DEAD_FRACTION)
    s = np.where(early, rng.beta(*LIVE_DEADNESS, n), s)
    r_live = rng.uniform(20.0, 35.0, n)
    radius = r_live * (1.0 - 0.38 * s)           # dead cells contract and round up
    # Integrated PI of a dead nucleus ~ its DNA content: about constant, whatever the cell size.
    pi_total = np.where(dead, rng.lognormal(np.log(PI_PER_DEAD_CELL), 0.25, n), 0.0)
    return pd.DataFrame({
        "y": cy, "x": cx, "radius": radius, "dead": dead, "deadness": s, "mitotic": mitotic,
        "early_dead": early, "aspect": 1.0 + (1.0 - s) * rng.uniform(0.0, 0.8, n),
        "angle": rng.uniform(0, np.pi, n), "pi_total": pi_total,
        "texture_seed": rng.integers(0, 2**31 - 1, n),
    })


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def _render_cell(cell: pd.Series, bf_delta: np.ndarray, pi_sig: np.ndarray,
                 coverage: np.ndarray) -> None:
    """Add one cell's BF contrast (fraction of background) and PI signal inside its bounding box."""
    rng = np.random.default_rng(int(cell.texture_seed))
    h, w = bf_delta.shape
    r, s = float(cell.radius), float(cell.deadness)
    half = int(np.ceil(1.9 * r * np.sqrt(cell.aspect))) + 2
    y0, y1 = max(0, int(cell.y) - half), min(h, int(cell.y) + half + 1)
    x0, x1 = max(0, int(cell.x) - half), min(w, int(cell.x) + half + 1)
    if y1 <= y0 or x1 <= x0:
        return
    dy = (np.arange(y0, y1, dtype=np.float32) - cell.y)[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) - cell.x)[None, :]
    ca, sa = np.cos(cell.angle), np.sin(cell.angle)
    a = np.sqrt(cell.aspect)
    u = (dx * ca + dy * sa) / a
    v = (-dx * sa + dy * ca) * a
    rho = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    # Irregular outline for spread cells, near-circle for rounded ones.
    wobble = np.zeros_like(theta)
    amp = 0.22 * (1.0 - s) + 0.02
    for k in (2, 3, 5):
        wobble += amp / k * rng.uniform(0.3, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    d = rho / (r * (1.0 + wobble))
    inside = _sigmoid((1.0 - d) / 0.05)

    # Texture: live = smooth grey, dead = coarse blotches that look blurred.
    noise = rng.normal(size=d.shape).astype(np.float32)
    fine = cv2.GaussianBlur(noise, (0, 0), 1.2)
    coarse = cv2.GaussianBlur(noise, (0, 0), 3.0)
    fine /= fine.std() + 1e-6
    coarse /= coarse.std() + 1e-6

    # Nucleus (with nucleoli) slightly off-centre; visible in live cells, condensed in dead ones.
    off = rng.uniform(-0.2, 0.2, 2) * r * (1.0 - s)
    rn = r * (0.42 - 0.08 * s)
    dn = np.sqrt((dy - off[0]) ** 2 + (dx - off[1]) ** 2) / rn
    nucleus = _sigmoid((1.0 - dn) / 0.08)
    nucleoli = np.zeros_like(d)
    for _ in range(rng.integers(1, 4)):
        ny, nx = off + rng.uniform(-0.5, 0.5, 2) * rn
        nucleoli += np.exp(-((dy - ny) ** 2 + (dx - nx) ** 2) / (2 * rng.uniform(1.5, 2.5) ** 2))

    live = (-0.06 * inside
            - 0.10 * np.exp(-(((d - 1.0) / 0.07) ** 2))
            - 0.045 * nucleus + 0.025 * np.exp(-(((dn - 1.0) / 0.12) ** 2))
            - 0.10 * nucleoli
            + 0.012 * fine * inside)
    dead = (-0.20 * inside
            + 0.38 * np.exp(-(((d - 1.0) / 0.11) ** 2))
            - 0.13 * np.exp(-(((d - 1.45) / 0.22) ** 2))
            + 0.05 * coarse * inside)
    bf_delta[y0:y1, x0:x1] += (1.0 - s) * live + s * dead
    coverage[y0:y1, x0:x1] |= d < 1.6
    if cell.dead:
        # The whole (condensed) nucleus fills with PI, plus out-of-focus glow around it.
        rp = r * (0.7 + 0.1 * s)
        dpi = np.sqrt((dy - off[0]) ** 2 + (dx - off[1]) ** 2) / rp
        amp = min(cell.pi_total / (np.pi * rp * rp * 1.144), 60000.0)  # 1.144: disc + glow area
        pi_sig[y0:y1, x0:x1] += amp * (_sigmoid((1.0 - dpi) / 0.12) + 0.1 * np.exp(-((dpi / 1.2) ** 2)))


def generate_frame(dataset: str, index: int, seed: int = 0,
                   plan: pd.DataFrame | None = None, n_frames: int | None = None) -> SyntheticFrame:
    """Render frame ``index`` of ``dataset``; the same (dataset, index, seed) always gives the same arrays.

    ``plan`` (from the dataset-level draw) fixes emptiness/density; without it a plan for
    ``n_frames`` (default index + 1) frames is drawn, so results match ``generate_dataset``
    only when ``n_frames`` matches.
    """
    if dataset not in PROFILES:
        raise ValueError(f"unknown synthetic dataset '{dataset}'; use one of {list(PROFILES)}")
    if plan is None:
        plan = _frame_plan(dataset, n_frames or index + 1, seed)
    row = plan.iloc[index]
    rng = np.random.default_rng([seed, _DATASET_CODE[dataset], index])
    shape = FRAME_SHAPE
    cells = _cell_table(rng, int(row.n_cells), float(row.dead_fraction), shape, bool(row.empty_region))
    bf_delta = np.zeros(shape, np.float32)
    pi_sig = np.zeros(shape, np.float32)
    coverage = np.zeros(shape, bool)
    for cell in cells.itertuples(index=False):
        _render_cell(cell, bf_delta, pi_sig, coverage)

    # Bright-field: lamp level x uneven illumination x (1 + cell contrast) + shot/read noise.
    level = rng.uniform(12000, 22000)
    illum = _illumination(rng, shape, 1.0)
    bf = level * illum * np.clip(1.0 + bf_delta, 0.05, None)  # overlapping cells never go negative
    bf += rng.normal(size=shape).astype(np.float32) * np.sqrt(60.0 ** 2 + 0.8 * bf)
    # PI: dark background ~150-250 counts, bright only over dead nuclei; optics blur, noise.
    pi_bg = float(np.clip(rng.normal(218.0, 20.0), 150.0, 250.0))
    pi = pi_bg * _illumination(rng, shape, 0.5) + cv2.GaussianBlur(pi_sig, (0, 0), 2.0)
    pi += rng.normal(size=shape).astype(np.float32) * np.sqrt(9.0 ** 2 + 1.5 * pi)
    cells = cells.drop(columns="texture_seed")
    return SyntheticFrame(
        bf=np.clip(bf, 0, 65535).round().astype(np.uint16),
        pi=np.clip(pi, 0, 65535).round().astype(np.uint16),
        cells=cells, coverage=coverage,
    )


def _percentile_8bit(frame: np.ndarray) -> np.ndarray:
    """Same default stretch as preprocessing (0.5/99.5 percentiles), for the example patches."""
    lo, hi = np.percentile(frame, [0.5, 99.5])
    scaled = (frame.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1.0))
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


def _example_candidates(frame: SyntheticFrame) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split a frame's non-overlapping 224 windows into clearly empty / clearly occupied ones."""
    bf8 = _percentile_8bit(frame.bf)
    win = EXAMPLE_WINDOW
    empty, nonempty = [], []
    for y in range(0, FRAME_SHAPE[0] - win + 1, win):
        for x in range(0, FRAME_SHAPE[1] - win + 1, win):
            cov = frame.coverage[y:y + win, x:x + win].mean()
            if cov == 0.0:
                empty.append(bf8[y:y + win, x:x + win])
            elif cov > 0.15:
                nonempty.append(bf8[y:y + win, x:x + win])
    return empty, nonempty


def generator_args(frames_notreat: int = 24, frames_doxo: int = 24, seed: int = 0,
                   examples_per_class: int = 40) -> dict[str, int]:
    """The canonical argument record stored with a generated folder (compared on reuse)."""
    return {"frames_notreat": int(frames_notreat), "frames_doxo": int(frames_doxo), "seed": int(seed),
            "examples_per_class": int(examples_per_class)}


def check_existing(folder: str | Path, **kwargs: int) -> None:
    """Raise if ``folder`` was generated with other arguments than ``kwargs`` (a stale config)."""
    record = Path(folder) / GENERATOR_FILE
    if not record.is_file():
        return  # not made by this generator (a user's own manifest): nothing to compare
    made = json.loads(record.read_text())
    wanted = generator_args(**kwargs)
    if made != wanted:
        raise ValueError(f"{folder} was generated with {made} but the config asks for {wanted}; "
                         "delete that folder to regenerate it, or point the manifest elsewhere")


def generate_dataset(out: str | Path, frames_notreat: int = 24, frames_doxo: int = 24, seed: int = 0,
                     examples_per_class: int = 40, verbose: bool = True) -> Path:
    """Write frames, ``manifest.csv``, ``cells.csv`` and ``empty_examples/`` under ``out``.

    The folder is built in a temporary sibling and renamed into place, so an interrupted run
    never leaves a half-written set that a later ``prepare_data`` would trust. Returns the
    manifest path. Refuses to touch an existing non-empty folder.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} already exists and is not empty; pass another --out or delete it first")
    if out.exists():
        out.rmdir()
    counts = {"notreat": int(frames_notreat), "doxo": int(frames_doxo)}
    if any(c < 0 for c in counts.values()) or sum(counts.values()) == 0:
        raise ValueError(f"frame counts must be >= 0 and not all zero, got {counts}")
    rng = np.random.default_rng([seed, 104729])
    t0 = time.perf_counter()
    rows, cell_tables = [], []
    empty_pool: list[np.ndarray] = []
    nonempty_pool: list[np.ndarray] = []
    with atomic_dir(out) as tmp:
        (tmp / "bf").mkdir()
        (tmp / "pi").mkdir()
        for dataset, n in counts.items():
            plan = _frame_plan(dataset, n, seed)
            for i in range(n):
                frame = generate_frame(dataset, i, seed, plan=plan)
                frame_id = f"{dataset}_{i:04d}"
                tifffile.imwrite(tmp / "bf" / f"{frame_id}.tif", frame.bf)
                tifffile.imwrite(tmp / "pi" / f"{frame_id}.tif", frame.pi)
                rows.append({"frame_id": frame_id, "dataset": dataset,
                             "bf_path": f"bf/{frame_id}.tif", "pi_path": f"pi/{frame_id}.tif"})
                cell_tables.append(frame.cells.assign(frame_id=frame_id))
                e, ne = _example_candidates(frame)
                empty_pool += e
                nonempty_pool += ne
        pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
        (tmp / GENERATOR_FILE).write_text(json.dumps(generator_args(frames_notreat, frames_doxo, seed,
                                                                    examples_per_class), indent=2))
        pd.concat(cell_tables, ignore_index=True).to_csv(tmp / "cells.csv", index=False)
        for name, pool in (("empty", empty_pool), ("nonempty", nonempty_pool)):
            folder = tmp / "empty_examples" / name
            folder.mkdir(parents=True)
            pick = rng.permutation(len(pool))[:examples_per_class]
            for j, k in enumerate(sorted(pick)):
                cv2.imwrite(str(folder / f"{name}_{j:03d}.png"), pool[k])
        elapsed = time.perf_counter() - t0
    total = sum(counts.values())
    if verbose:
        print(f"synthetic JIMT-1: {total} frames in {elapsed:.1f}s ({total / elapsed:.1f} frames/s) "
              f"-> {out / 'manifest.csv'}")
    return out / "manifest.csv"


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m stainfree.data.jimt.synthetic --out data/synthetic_jimt [--export voc,coco,points,folders]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="new folder for bf/, pi/, manifest.csv")
    p.add_argument("--frames-notreat", type=int, default=24)
    p.add_argument("--frames-doxo", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--examples-per-class", type=int, default=40,
                   help="labelled 224 patches per class in empty_examples/ (for the SVM filter)")
    p.add_argument("--export", default=None,
                   help="also write annotated/ with these of voc,coco,points,folders (+ truth.csv); an "
                        "existing set made with the same arguments is exported without regenerating")
    p.add_argument("--image-style", default="mixed",
                   help="exported PNGs: mixed (16-bit, 8-bit grey, RGB, palette) | grey16 | grey8 | rgb | palette")
    p.add_argument("--class-names", default="live,dead", help="exported class names, live first, "
                                                               "e.g. 'Living Cell,Dead Cell'")
    p.add_argument("--near-duplicates", type=int, default=0,
                   help="add flipped/rotated/brightness-shifted copies of this many fields under unrelated names")
    a = p.parse_args(argv)
    args = dict(frames_notreat=a.frames_notreat, frames_doxo=a.frames_doxo, seed=a.seed,
                examples_per_class=a.examples_per_class)
    try:
        options = _export_options(a) if a.export else None  # checked before minutes of generation
        if options and (Path(a.out) / GENERATOR_FILE).is_file():
            check_existing(a.out, **args)
        else:
            generate_dataset(a.out, **args)
        if options:
            from stainfree.data.jimt.synthetic_export import export_annotated

            export_annotated(a.out, options)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _export_options(a: argparse.Namespace) -> "ExportOptions":  # noqa: F821 - imported below
    """The CLI's export flags, checked (imported here: the export module builds on this one)."""
    from stainfree.data.jimt.synthetic_export import ExportOptions

    options = ExportOptions(formats=tuple(f.strip() for f in a.export.split(",") if f.strip()),
                            image_style=a.image_style, class_names=tuple(n.strip() for n in a.class_names.split(",")),
                            near_duplicates=a.near_duplicates)
    options.check()
    return options


if __name__ == "__main__":
    sys.exit(main())

"""``celldeath``: the file-name route. Labels, cell line, time and replicate come from name tokens
(``celldeath.naming``); every field is cut into the authors' grid of ``n_tiles`` tiles."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from stainfree.data.celldeath import catalog
from stainfree.data.celldeath.naming import NameScheme
from stainfree.data.celldeath.tiling import grid_shape, tile_boxes
from stainfree.data.imageio import image_size
from stainfree.data.samples import HINTS, validate_samples


def read_celldeath(root: str | os.PathLike, naming: dict[str, Any] | None = None, on_unlabelled: str = "error",
                   task: str = "cpt_vs_dmso", cell_lines: Sequence[str] | None = None,
                   time_points: Sequence[int] | None = None, n_tiles: int = 4) -> pd.DataFrame:
    """One row per tile of every labelled field under ``root`` (fields in name order, tiles row-major).

    ``label`` is the task's class (``control``/``celldeath``, or ``<line>_<treatment>`` for
    all_vs_all), ``group`` the field; metadata: image_id, tile, tile_row, tile_col, cell_line,
    treatment, treatment_token, time, replicate. Hints: layout = the grid, class order, counts of
    the fields left out.
    """
    grid_shape(int(n_tiles))
    scheme = NameScheme.from_config(naming)
    images = catalog.scan_folder(root, scheme, on_unlabelled)
    n_unlabelled, n_all = images.attrs.get("n_unlabelled", 0), len(images)
    images = catalog.select_time_points(images, time_points)
    names = catalog.class_names_for(images, task, cell_lines)
    images["class_name"] = [names[i] for i in catalog.targets_for(images, task, names)]
    rows = []
    for image in images.itertuples(index=False):
        height, width = image_size(image.path)
        for k, (r, c, y0, y1, x0, x1) in enumerate(tile_boxes(height, width, int(n_tiles))):
            rows.append((image.path, image.class_name, image.image_id, float(x0), float(y0), float(x1),
                         float(y1), k, r, c, height, width))
    table = pd.DataFrame(rows, columns=["path", "label", "group", "x0", "y0", "x1", "y1", "tile", "tile_row",
                                        "tile_col", "image_height", "image_width"])
    meta = images.set_index("path")[["image_id", "cell_line", "label", "treatment_token", "time", "replicate"]]
    meta = meta.rename(columns={"label": "treatment"})
    table = table.join(meta, on="path")
    table["region_kind"] = "tile"
    table["sample_id"] = table["image_id"] + "#" + table["tile"].astype(str)
    table["time"] = table["time"].astype("Int64")
    table.attrs[HINTS] = {"layout": {"kind": "grid", "n_tiles": int(n_tiles)}, "classes": names,
                          "excluded": {"unlabelled": int(n_unlabelled), "other time points": n_all - len(images)}}
    return validate_samples(table, source=f"data.root={Path(root)}", check_files=False)


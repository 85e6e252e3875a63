"""Importers: each ``read_<kind>(**options) -> DataFrame`` returns a valid sample table.

The registry below is the allow-list: a config (or a checkpoint) names a source by its key, never
by code to import. Modules are imported on first use, so one missing importer never breaks another.
``bind`` checks a DataModule's keys against the importer's signature before anything runs.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Mapping

from stainfree.utils.errors import UserError

SOURCES: dict[str, str] = {
    "folders": "stainfree.data.sources.folders:read_folders",
    "voc": "stainfree.data.sources.voc:read_voc",
    "coco": "stainfree.data.sources.coco:read_coco",
    "points_csv": "stainfree.data.sources.points_csv:read_points_csv",
    "pairs": "stainfree.data.sources.pairs:read_pairs",
    "celldeath": "stainfree.data.sources.celldeath:read_celldeath",
    "table": "stainfree.data.sources.table:read_table",
}


def reader(name: str) -> Callable[..., Any]:
    """The importer function registered as ``name``; a one-line error for unknown or missing ones."""
    if name not in SOURCES:
        raise UserError(f"data.source='{name}' is not a known source; use one of {sorted(SOURCES)}")
    module, func = SOURCES[name].split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as err:
        raise UserError(f"data.source='{name}' is not available in this installation ({err}); "
                        "update stainfree or pick another source") from err


def bind(name: str, options: Mapping[str, Any], common: Mapping[str, Any]) -> tuple[Callable[..., Any], dict[str, Any]]:
    """(importer, kwargs): ``options`` must be keys its signature names; named common keys are passed too."""
    read = reader(name)
    params = inspect.signature(read).parameters
    names = [p for p, v in params.items() if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        own = [n for n in names if n not in common]
        raise UserError(f"data.{unknown[0]} is not an option of data source '{name}'"
                        + (f" (also unknown: {unknown[1:]})" if len(unknown) > 1 else "")
                        + f"; its options are {own}, plus the common keys {sorted(common)}")
    kwargs = {k: v for k, v in common.items() if k in names}
    kwargs.update(options)
    required = [n for n in names if params[n].default is inspect.Parameter.empty and n not in kwargs]
    if required:
        raise UserError(f"data source '{name}' needs data.{required[0]}"
                        + (f" (and {required[1:]})" if len(required) > 1 else "") + "; set it on the command line")
    return read, kwargs

"""``data.class_map``: annotation class names -> the class names every output uses.

Public sets name their classes as their authors liked (``Living Cell``, ``Dead Cell``); the map
renames them (``{Living Cell: live, Dead Cell: dead}``), merges several into one
(``{early apoptotic: dead, late apoptotic: dead}``) or leaves one out on purpose (``{Debris: null}``,
counted in the import report). With a map, a name it does not list stops the import with every
name found, so a typo never becomes a third class. Without a map (null) names are used as they are.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable

from stainfree.data.sources.common import SourceError, shorten


def normalise_class_map(class_map: Any) -> dict[str, str | None] | None:
    """Plain ``{str: str | None}`` from a dict or Hydra DictConfig; bad values stop with the fix."""
    if class_map is None:
        return None
    if not isinstance(class_map, Mapping):
        raise SourceError(f"data.class_map={class_map!r} is not a mapping; write it as "
                          "data.class_map='{Living Cell: live, Dead Cell: dead}' (or null)")
    out: dict[str, str | None] = {}
    for key, value in class_map.items():
        if value is not None and (not isinstance(value, (str, int)) or str(value).strip() == ""):
            raise SourceError(f"data.class_map: '{key}' maps to {value!r}; map each name to a class name "
                              "(or to null to leave that class out)")
        out[str(key).strip()] = None if value is None else str(value).strip()
    if not any(v is not None for v in out.values()):
        raise SourceError("data.class_map leaves every class out (all values are null); map the names you "
                          "want to class names")
    return out


def map_class_names(names: Iterable[str], class_map: dict[str, str | None] | None, source: str,
                    where: str) -> dict[str, str | None]:
    """``{annotation name: class name or None (left out)}`` for every name in ``names``.

    ``where`` names the annotation file(s) in the error. Names are compared after trimming spaces.
    """
    found = sorted({str(n).strip() for n in names})
    if class_map is None:
        return {name: name for name in found}
    unknown = [name for name in found if name not in class_map]
    if unknown:
        suggestion = ", ".join(f"{n}: {class_map.get(n, '<class>')}" for n in found)
        raise SourceError(
            f"{source}: class name(s) {shorten(unknown)} in {where} are not in data.class_map; names found: "
            f"{found}; add each to the map, e.g. data.class_map='{{{suggestion}}}' (null leaves a class out)")
    return {name: class_map[name] for name in found}

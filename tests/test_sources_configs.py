"""The importers' Hydra configs offer exactly the options their functions take (CONTRACT section 7)."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from stainfree.data.sources.coco import read_coco
from stainfree.data.sources.folders import read_folders
from stainfree.data.sources.points_csv import read_points_csv
from stainfree.data.sources.voc import read_voc

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


@pytest.mark.parametrize("name, reader", [("folders", read_folders), ("voc", read_voc), ("coco", read_coco),
                                          ("points_csv", read_points_csv)])
def test_config_keys_are_the_importer_options(name, reader) -> None:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert list(cfg.defaults) == ["_samples", "_self_"] and cfg.source == name
    options = {k: v for k, v in cfg.items() if k not in ("defaults", "source")}
    params = inspect.signature(reader).parameters
    assert set(options) == set(params)
    for key, value in options.items():  # the config's defaults are the function's
        default = params[key].default
        assert value == (None if default is inspect.Parameter.empty else default), key
    assert cfg.class_map is None  # a null default: a dict is replaced whole, no Hydra `+` needed
    for key in params:  # every option is documented in the function's docstring
        assert f"  {key} " in reader.__doc__, key


def test_class_map_override_needs_no_plus_and_takes_spaces_and_null() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_override(
        "data.class_map={Living Cell: live, Dead Cell: dead, Debris: null}")
    assert override.value() == {"Living Cell": "live", "Dead Cell": "dead", "Debris": None}

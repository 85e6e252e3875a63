"""Read an offline W&B run file (``run-*.wandb``) without the W&B service (used by the tests).

Offline runs are only protobuf records in a LevelDB-style log: this lets tests and users check
what was logged (history, summary, config with the custom-chart specs, run name/group/tags,
metric definitions, tables and their images) before ``wandb sync``. Logged tables live in
``run_table`` artifacts whose files W&B stages under ``$WANDB_DATA_DIR/artifacts/staging`` until
the run is synced; ``read_table`` reads them from there.
"""
from __future__ import annotations

import json
import os
import struct
import time
from typing import Any, Iterable, Iterator

HEADER = b":W&B"
HEADER_SIZE = 7  # magic (4) + 0xBEE1 (2) + version (1)
BLOCK_SIZE = 32768
RECORD_HEADER = 7  # crc32c (4) + length (2) + type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_raw_records(path: str | os.PathLike) -> Iterator[bytes]:
    """Yield each record's payload (reassembling records split across 32 KiB blocks)."""
    data = open(path, "rb").read()
    if not data.startswith(HEADER):
        raise ValueError(f"{path}: not a W&B run file (no ':W&B' header)")
    pos, pending = HEADER_SIZE, b""
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE
        if left_in_block < RECORD_HEADER:
            pos += left_in_block  # zero padding at the end of a block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + RECORD_HEADER])
        payload = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            yield pending + payload
            pending = b""


def iter_records(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """Yield ``(record type, record body)`` for every record (``history``, ``summary``, ``config``,
    ``run``, ``metric``, ``artifact``, ...), bodies as W&B's protobuf messages."""
    from wandb.proto import wandb_internal_pb2

    for payload in iter_raw_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind:
            yield kind, getattr(record, kind)


def wait_until_closed(path: str | os.PathLike, timeout: float = 60.0) -> None:
    """Wait until the run's ``exit`` record is on disk.

    W&B's service process writes the file in 32 KiB blocks and may still hold the last one when
    ``run.finish()`` (or the training process) has returned: a small run can read back empty.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(kind == "exit" for kind, _ in iter_records(path)):
                return
        except (FileNotFoundError, ValueError):  # not created / header not written yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: no exit record after {timeout:.0f} s; is the run still open?")
        time.sleep(0.1)


def _flat_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def _nest(target: dict[str, Any], items: Iterable[Any]) -> None:
    """Apply update items (``key`` or ``nested_key`` path, JSON value) to a nested dict."""
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = target
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = json.loads(item.value_json)


def read_history(path: str | os.PathLike) -> list[dict[str, object]]:
    """All history rows (``wandb.log`` calls) of an offline run, values JSON-decoded.

    Nested values are flattened with '/' (``test/roc/_type``)."""
    return [
        {_flat_key(item): json.loads(item.value_json) for item in body.item}
        for kind, body in iter_records(path)
        if kind == "history"
    ]


def read_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The run's final summary as a nested dict (``{"val/bal_acc_best": {"max": 0.9}, ...}``)."""
    summary: dict[str, Any] = {}
    for kind, body in iter_records(path):
        if kind == "summary":
            _nest(summary, body.update)
    return summary


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The run's config as a nested dict; custom-chart specs are under ``_wandb.visualize.<key>``."""
    config: dict[str, Any] = {}
    for kind, body in iter_records(path):
        if kind == "run":
            _nest(config, body.config.update)
        elif kind == "config":
            _nest(config, body.update)
    return config


def read_run(path: str | os.PathLike) -> dict[str, Any]:
    """Who the run is: ``id``, ``name``, ``group``, ``job_type`` and ``tags`` (first run record)."""
    for kind, body in iter_records(path):
        if kind == "run":
            return dict(id=body.run_id, name=body.display_name, group=body.run_group,
                        job_type=body.job_type, tags=list(body.tags))
    raise ValueError(f"{path}: no run record")


def read_metric_definitions(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``define_metric`` calls: name -> ``{"summary": [aggregates], "step_metric": ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for kind, body in iter_records(path):
        if kind == "metric":
            name = body.name or body.glob_name
            summary = [f.name for f in body.summary.DESCRIPTOR.fields if getattr(body.summary, f.name)]
            out[name] = dict(summary=summary, step_metric=body.step_metric)
    return out


def read_artifacts(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Logged artifacts: ``name``, ``type``, ``aliases`` and ``files`` (path -> staged local copy)."""
    return [
        dict(name=body.name, type=body.type, aliases=list(body.aliases),
             files={c.path: c.local_path for c in body.manifest.contents})
        for kind, body in iter_records(path)
        if kind == "artifact"
    ]


def read_table(path: str | os.PathLike, key: str) -> dict[str, Any]:
    """The table logged under ``key`` (``columns``, ``data``; images as ``image-file`` dicts) from
    its staged ``run_table`` artifact, plus ``files``: every file of that artifact (path -> local
    copy), so a test can check that each image cell has its PNG."""
    wanted = f"{key}.table.json"
    for artifact in read_artifacts(path):
        if artifact["type"] == "run_table" and wanted in artifact["files"]:
            local = artifact["files"][wanted]
            if not os.path.isfile(local):
                raise FileNotFoundError(f"{local}: the staged copy of table {key} is gone (synced or cleaned)")
            with open(local) as file:
                table = json.load(file)
            return dict(table, files=artifact["files"])
    raise KeyError(f"{path}: no table logged under '{key}'")

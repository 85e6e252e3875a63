"""Read an offline W&B run file (``run-*.wandb``) without the W&B service (used by the tests).

Offline runs are only protobuf records in a LevelDB-style log: this lets tests and users check
what was logged (metric keys, summary) before ``wandb sync``.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Iterator

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


def read_history(path: str | os.PathLike) -> list[dict[str, object]]:
    """All history rows (``wandb.log`` calls) of an offline run, values JSON-decoded."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for payload in iter_raw_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item}
            )
    return rows

"""Read the records of an offline W&B run file (``run-<id>.wandb``) without a server.

The file is W&B's 7-byte header followed by a LevelDB-style log (32 KiB blocks of records with a 7-byte
header: crc32c, length, type FULL/FIRST/MIDDLE/LAST) whose payloads are ``wandb_internal_pb2.Record``
protobufs. wandb >= 0.19 no longer ships a Python reader, so the tests carry this small one.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2

HEADER, BLOCK, RECORD_HEADER = 7, 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path):
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - (pos % BLOCK)
        if left_in_block < RECORD_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + RECORD_HEADER])
        chunk = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def summary(path: Path) -> dict[str, object]:
    """The run's final summary, as the W&B UI would show it."""
    values: dict[str, object] = {}
    for payload in payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                values[key] = json.loads(item.value_json)
    return values


def records(path: Path, kind: str):
    """Every record of one type (``run``, ``history``, ``summary``, ``metric``, ``artifact``...)."""
    for payload in payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == kind:
            yield getattr(record, kind)


def history(path: Path) -> list[dict[str, object]]:
    """The logged rows (``run.log`` / Lightning's ``log_metrics``), in order."""
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in row.item}
        for row in records(path, "history")
    ]


def finished(path: Path, timeout: float = 60.0) -> Path:
    """``path`` once W&B's service has written the run's exit record: ``run.finish()`` can return before
    the offline file is complete."""
    deadline = time.monotonic() + timeout
    while not any(True for _ in records(path, "exit")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has no exit record after {timeout} s")
        time.sleep(0.1)
    return path

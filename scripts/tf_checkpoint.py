"""Read a TensorFlow 1.x checkpoint bundle (`.index` + `.data-*`) without TensorFlow.

The `.index` file is a LevelDB table whose values are `BundleEntryProto` messages; tensors are raw
little-endian bytes in the data shard at the recorded offset. Only what musicnn's checkpoints use is
supported: uncompressed blocks, one shard, float/int dtypes.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_}
_MAGIC = 0xDB4775248B80FB57


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _block_handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return (offset, size), pos


def _read_block(data: bytes, handle: tuple[int, int]) -> list[tuple[bytes, bytes]]:
    offset, size = handle
    if data[offset + size] != 0:
        raise ValueError("compressed checkpoint index blocks are not supported")
    block = data[offset:offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def _parse_fields(msg: bytes) -> dict[int, list]:
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(msg):
        tag, pos = _varint(msg, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(msg, pos)
        elif wire == 2:
            n, pos = _varint(msg, pos)
            value, pos = msg[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = msg[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = msg[pos:pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """All variables of the checkpoint at `prefix` (the path without `.index`)."""
    prefix = str(prefix)
    index = Path(prefix + ".index").read_bytes()
    footer = index[-48:]
    if struct.unpack_from("<Q", footer, 40)[0] != _MAGIC:
        raise ValueError(f"{prefix}.index is not a TensorFlow checkpoint index")
    _, pos = _block_handle(footer, 0)
    index_handle, _ = _block_handle(footer, pos)
    folder, stem = os.path.split(prefix)
    shards = sorted(Path(folder).glob(stem + ".data-*"))
    if len(shards) != 1:
        raise ValueError(f"expected one data shard next to {prefix}, found {len(shards)}")
    data = shards[0].read_bytes()
    tensors: dict[str, np.ndarray] = {}
    for _, handle_bytes in _read_block(index, index_handle):
        handle, _ = _block_handle(handle_bytes, 0)
        for key, value in _read_block(index, handle):
            if not key:
                continue  # the bundle header
            f = _parse_fields(value)
            dtype = _DTYPES[f.get(1, [0])[0]]
            shape = [(_parse_fields(d).get(1, [0])[0]) for d in _parse_fields(f[2][0]).get(2, [])] if 2 in f else []
            offset, size = f.get(4, [0])[0], f.get(5, [0])[0]
            arr = np.frombuffer(data[offset:offset + size], dtype=dtype).reshape(shape)
            tensors[key.decode()] = arr.copy()
    return tensors

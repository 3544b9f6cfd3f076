"""Timestamp strip: a frame's sequence number and capture time as black/white blocks.

The strip sits at the top-left of the picture. It carries 96 bits: an 8-bit preamble, the
32-bit sequence number, the capture time in whole milliseconds since the epoch (48 bits) and a
CRC-8 of the payload. Blocks are at least 8 px square and are read at their centres with a mid
grey threshold, so the strip survives H.264 and JPEG at ordinary qualities.
"""

from __future__ import annotations

import math

import numpy as np

PREAMBLE = 0b10110010
BITS = 8 + 32 + 48 + 8
MIN_BLOCK = 8  # pixels
_BLOCKS_PER_ROW_AT_WIDTH = 80


def block_size(width: int) -> int:
    return max(MIN_BLOCK, width // _BLOCKS_PER_ROW_AT_WIDTH)


def strip_height(width: int) -> int:
    block = block_size(width)
    per_row = width // block
    return math.ceil(BITS / per_row) * block


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _payload(seq: int, ts: float) -> bytes:
    millis = round(ts * 1000)
    return (seq & 0xFFFFFFFF).to_bytes(4, "big") + (millis & (2**48 - 1)).to_bytes(6, "big")


def _bits(seq: int, ts: float) -> list[int]:
    payload = _payload(seq, ts)
    value = int.from_bytes(bytes([PREAMBLE]) + payload + bytes([_crc8(payload)]), "big")
    return [(value >> (BITS - 1 - i)) & 1 for i in range(BITS)]


def draw(image: np.ndarray, seq: int, ts: float) -> None:
    """Write the strip into ``image`` (HxWx3 or HxW uint8) in place."""
    width = image.shape[1]
    block = block_size(width)
    per_row = width // block
    if image.shape[0] < strip_height(width):
        raise ValueError(f"frame {width}x{image.shape[0]} is too small for the strip")
    for i, bit in enumerate(_bits(seq, ts)):
        y, x = (i // per_row) * block, (i % per_row) * block
        image[y : y + block, x : x + block] = 255 if bit else 0


def read(image: np.ndarray) -> tuple[int, float] | None:
    """Return ``(seq, capture_ts)`` from a frame carrying a strip, or None if absent/corrupt.

    ``image`` is BGR (HxWx3) or grey (HxW) at the resolution the strip was drawn at.
    """
    width = image.shape[1]
    block = block_size(width)
    per_row = width // block
    if image.shape[0] < strip_height(width):
        return None
    idx = np.arange(BITS)
    ys = (idx // per_row) * block + block // 2
    xs = (idx % per_row) * block + block // 2
    samples = image[ys, xs]
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    bits = (samples > 127).astype(np.uint8)
    value = int("".join(map(str, bits.tolist())), 2)
    raw = value.to_bytes(BITS // 8, "big")
    if raw[0] != PREAMBLE or _crc8(raw[1:11]) != raw[11]:
        return None
    seq = int.from_bytes(raw[1:5], "big")
    millis = int.from_bytes(raw[5:11], "big")
    return seq, millis / 1000.0

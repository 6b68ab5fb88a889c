"""SM3 hash (GB/T 32905-2016) in pure Python, with a hashlib-compatible object.

Used only when the linked OpenSSL lacks SM3 (some distributions remove it), so SDK-HMAC-SM3
verification does not depend on how Python was built.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_MASK = 0xFFFFFFFF
_IV = (
    0x7380166F,
    0x4914B2B9,
    0x172442D7,
    0xDA8A0600,
    0xA96F30BC,
    0x163138AA,
    0xE38DEE4D,
    0xB0FB0E4E,
)


def _rotl(x: int, n: int) -> int:
    n %= 32
    return ((x << n) | (x >> (32 - n))) & _MASK


# T_j rotated by j, precomputed once: it is the same for every block.
_T_ROTATED = tuple(_rotl(0x79CC4519 if j < 16 else 0x7A879D8A, j) for j in range(64))


def _compress(state: tuple[int, ...], block: bytes) -> tuple[int, ...]:
    w = list(struct.unpack(">16I", block))
    for j in range(16, 68):
        x = w[j - 16] ^ w[j - 9] ^ _rotl(w[j - 3], 15)
        w.append(x ^ _rotl(x, 15) ^ _rotl(x, 23) ^ _rotl(w[j - 13], 7) ^ w[j - 6])
    a, b, c, d, e, f, g, h = state
    for j in range(64):
        a12 = _rotl(a, 12)
        ss1 = _rotl((a12 + e + _T_ROTATED[j]) & _MASK, 7)
        ss2 = ss1 ^ a12
        if j < 16:
            ff = a ^ b ^ c
            gg = e ^ f ^ g
        else:
            ff = (a & b) | (a & c) | (b & c)
            gg = (e & f) | (~e & g)
        tt1 = (ff + d + ss2 + (w[j] ^ w[j + 4])) & _MASK
        tt2 = (gg + h + ss1 + w[j]) & _MASK
        a, b, c, d = tt1, a, _rotl(b, 9), c
        e, f, g, h = tt2 ^ _rotl(tt2, 9) ^ _rotl(tt2, 17), e, _rotl(f, 19), g
    return tuple(s ^ v for s, v in zip(state, (a, b, c, d, e, f, g, h), strict=True))


class SM3:
    """A hashlib-style SM3 object: ``SM3(data).hexdigest()``; usable as an HMAC digestmod."""

    name = "sm3"
    digest_size = 32
    block_size = 64

    def __init__(self, data: ReadableBuffer = b"") -> None:
        self._state: tuple[int, ...] = _IV
        self._pending = b""
        self._length = 0
        self.update(data)

    def update(self, data: ReadableBuffer, /) -> None:
        chunk = self._pending + bytes(data)
        self._length += len(chunk) - len(self._pending)
        full = len(chunk) - len(chunk) % 64
        for offset in range(0, full, 64):
            self._state = _compress(self._state, chunk[offset : offset + 64])
        self._pending = chunk[full:]

    def copy(self) -> Self:
        clone = type(self)()
        clone._state, clone._pending, clone._length = self._state, self._pending, self._length
        return clone

    def digest(self) -> bytes:
        tail = self._pending + b"\x80" + b"\x00" * ((55 - len(self._pending)) % 64)
        tail += struct.pack(">Q", self._length * 8)
        state = self._state
        for offset in range(0, len(tail), 64):
            state = _compress(state, tail[offset : offset + 64])
        return struct.pack(">8I", *state)

    def hexdigest(self) -> str:
        return self.digest().hex()

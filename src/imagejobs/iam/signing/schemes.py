"""The signing schemes this service verifies: their hashes, headers and the HMAC key.

``shared/spec/huaweicloud-auth.md`` §1.1 and §1.5 are the reference.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, Self, cast

from imagejobs.iam.sm3 import SM3

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class SigningAlgorithm(StrEnum):
    """The Authorization scheme tokens this service verifies (HMAC schemes only)."""

    HMAC_SHA256 = "SDK-HMAC-SHA256"
    HMAC_SM3 = "SDK-HMAC-SM3"


class Hash(Protocol):
    """What HMAC needs of a hash object (hashlib's, or the pure-Python SM3)."""

    @property
    def block_size(self) -> int: ...
    def update(self, data: bytes, /) -> None: ...
    def copy(self) -> Self: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Scheme:
    token: str  # the Authorization scheme, as plain text for the string to sign
    hash_name: str  # for messages
    content_header: str  # the payload-hash header, as the SDK spells it
    content_key: str  # the same, lower-cased for lookups
    empty_hash: str
    # For the short messages of every request (canonical request, HMAC).
    new_hash: Callable[[bytes], Hash]
    # For bodies, of any size.
    hash_hex: Callable[[bytes], str]


def _openssl_has_sm3() -> bool:
    try:
        hashlib.new("sm3")
    except ValueError:
        return False
    return True


if _openssl_has_sm3():

    def _new_sm3(data: bytes = b"") -> Hash:
        return hashlib.new("sm3", data)

    def _sm3_hex(data: bytes) -> str:
        return hashlib.new("sm3", data).hexdigest()

else:  # pragma: no cover - depends on how OpenSSL was built

    def _new_sm3(data: bytes = b"") -> Hash:
        return SM3(data)

    def _sm3_hex(data: bytes) -> str:
        return SM3(data).hexdigest()


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short_message_sha256() -> Callable[[bytes], Hash]:
    """CPython's own SHA-256 when it has one: for a few hundred bytes OpenSSL's dispatch
    costs more than the hashing, and its larger code falls out of the CPU caches between
    requests (cold, a canonical request's hash and HMAC take 2x longer through OpenSSL).
    Bodies still go through OpenSSL, which is faster on long data."""
    for name in ("_sha2", "_sha256"):  # Python 3.12+, 3.11
        try:
            return cast("Callable[[bytes], Hash]", importlib.import_module(name).sha256)
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256


SCHEMES: dict[SigningAlgorithm, Scheme] = {
    SigningAlgorithm.HMAC_SHA256: Scheme(
        token=SigningAlgorithm.HMAC_SHA256.value,
        hash_name="SHA-256",
        content_header="X-Sdk-Content-Sha256",
        content_key="x-sdk-content-sha256",
        empty_hash="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        new_hash=_short_message_sha256(),
        hash_hex=_sha256_hex,
    ),
    SigningAlgorithm.HMAC_SM3: Scheme(
        token=SigningAlgorithm.HMAC_SM3.value,
        hash_name="SM3",
        content_header="X-Sdk-Content-Sm3",
        content_key="x-sdk-content-sm3",
        empty_hash="1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b",
        new_hash=_new_sm3,
        hash_hex=_sm3_hex,
    ),
}


def encode(text: str) -> bytes:
    """Text decoded from the wire back to its bytes (non-UTF-8 bytes were surrogate-escaped)."""
    return text.encode("utf-8", "surrogateescape")


class SigningKey:
    """A secret key made ready for HMAC: the padded inner and outer hash states are computed
    once per algorithm, so each verification only hashes the message (RFC 2104)."""

    __slots__ = ("_compiled_pads", "_pads", "secret")

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._pads: dict[str, tuple[Hash, Hash]] = {}
        self._compiled_pads: bytes | None = None

    def sha256_pads(self, hmac_pads: Callable[[bytes], bytes]) -> bytes:
        """The HMAC-SHA256 pads as the compiled verifier takes them (``_sigcore``)."""
        pads = self._compiled_pads
        if pads is None:
            pads = self._compiled_pads = hmac_pads(self.secret.encode())
        return pads

    def __repr__(self) -> str:
        return "SigningKey(<secret>)"

    def hmac_hex(self, algorithm: SigningAlgorithm, message: bytes) -> str:
        pads = self._pads.get(algorithm)
        if pads is None:
            pads = self._pads[algorithm] = _hmac_pads(SCHEMES[algorithm].new_hash, self.secret)
        inner = pads[0].copy()
        inner.update(message)
        outer = pads[1].copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _hmac_pads(new_hash: Callable[[bytes], Hash], secret: str) -> tuple[Hash, Hash]:
    key = secret.encode()
    inner, outer = new_hash(b""), new_hash(b"")
    if len(key) > inner.block_size:
        key = new_hash(key).digest()
    key = key.ljust(inner.block_size, b"\0")
    inner.update(key.translate(_XOR_36))
    outer.update(key.translate(_XOR_5C))
    return inner, outer


_XOR_36 = bytes(byte ^ 0x36 for byte in range(256))
_XOR_5C = bytes(byte ^ 0x5C for byte in range(256))

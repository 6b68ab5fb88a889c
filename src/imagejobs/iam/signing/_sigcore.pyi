"""Types of the optional C module compiled from _sigcore.c (see that file)."""

from collections.abc import Mapping
from typing import TypeVar

_T = TypeVar("_T")
_P = TypeVar("_P")

SHA_EXTENSIONS: int
DEFAULT_MAX_SKEW_SECONDS: float

def signature_matches(
    pads: bytes,
    method: str,
    uri: str,
    queries: tuple[str, ...],
    headers: dict[str, str],
    signed_headers: tuple[str, ...],
    payload_hashes: list[str],
    token: str,
    sdk_date: str,
    signature: str,
    /,
) -> bool | None: ...
def verify_plain(
    pads: bytes,
    method: str,
    raw_path: str | bytes,
    raw_query: str | bytes,
    headers: dict[str, str],
    body: bytes,
    signed_headers: tuple[str, ...],
    signature: str,
    now: float,
    max_skew: float,
    /,
) -> bool | None: ...
def decode_headers(
    headers: object, /
) -> tuple[tuple[tuple[str, str], ...], dict[str, str]] | None: ...
def new_request(
    cls: type[_T], method: str, raw_path: bytes, raw_query: bytes, headers: object, body: bytes, /
) -> _T | None: ...
def parse_authorization(cls: type[_T], scheme: object, value: str, /) -> _T | None: ...
def hmac_pads(key: bytes, /) -> bytes: ...
def sha256(data: bytes, portable: bool, /) -> bytes: ...
def authenticate_plain(
    keys: dict[str, tuple[bytes, float, _P]],
    authorization: str,
    method: str,
    raw_path: str | bytes,  # only bytes is taken; anything else is declined (None)
    raw_query: str | bytes,
    headers: Mapping[str, str],  # only a dict is taken
    body: bytes,
    now_ms: int,
    /,
) -> _P | None: ...

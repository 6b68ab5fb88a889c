"""A signed request as received: its headers decoded from the wire, and its Authorization
header parsed (``shared/spec/huaweicloud-auth.md`` §1.3)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from imagejobs.domain.errors import AuthenticationFailed
from imagejobs.iam.signing.schemes import SigningAlgorithm

try:  # _sigcore.c's new_request and parse_authorization, when it was compiled at install
    from imagejobs.iam.signing._sigcore import new_request as _new_request
    from imagejobs.iam.signing._sigcore import parse_authorization as _parse_plain
except ImportError:  # pragma: no cover - an install without a C compiler
    _new_request = None  # type: ignore[assignment]
    _parse_plain = None  # type: ignore[assignment]

_BY_TOKEN = {algorithm.value: algorithm for algorithm in SigningAlgorithm}
# Schemes the SDK can emit but this service does not verify; named so the error says so.
_UNSUPPORTED_SCHEMES = frozenset({"SDK-ECDSA-P256-SHA256", "SDK-SM2-SM3", "V11-HMAC-SHA256"})

# What precedes "Signature=" after the scheme: the same on every request of one client.
_AUTHORIZATION_HEAD = re.compile(
    r"Access=(?P<access>[^\s,=]{1,128})\s*,\s*"
    r"SignedHeaders=(?P<signed>[0-9a-z!#$%&'*+.^_`|~-]+(?:;[0-9a-z!#$%&'*+.^_`|~-]+)*)\s*,\s*"
)
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_MALFORMED = (
    "malformed Authorization header, expected "
    "'<scheme> Access=<AK>, SignedHeaders=<a;b>, Signature=<64 hex digits>'"
)


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """A request as it arrived, before any framework normalisation.

    ``raw_path`` is the percent-encoded path without the query; ``raw_query`` is the query
    string without ``?``; header values are text decoded from the wire as UTF-8
    (:meth:`from_raw` does this losslessly from ASGI bytes).
    """

    method: str
    raw_path: str | bytes
    raw_query: str | bytes
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    # Lower-case name -> trimmed value (repeated headers joined by ","), built once.
    header_map: Mapping[str, str] = field(init=False, repr=False, compare=False)

    @classmethod
    def from_raw(
        cls,
        method: str,
        raw_path: bytes,
        raw_query: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
    ) -> ReceivedRequest:
        if _new_request is not None:  # all below in one C call, where it applies
            request = _new_request(cls, method, raw_path, raw_query, headers, body)
            if request is not None:
                return request
        # Values: surrogateescape keeps non-UTF-8 bytes intact, so hashing gives back the wire
        # bytes. Names: Latin-1, so that no non-ASCII name can lower-case into an ASCII one
        # (the Kelvin sign would make "x-sdK-date" an x-sdk-date as UTF-8).
        decoded = []
        header_map = {}
        for name, value in headers:
            text = name.decode("latin-1")
            value_text = value.decode("utf-8", "surrogateescape")
            decoded.append((text, value_text))
            header_map[text] = value_text.strip()
        names = "".join(header_map)
        if len(header_map) == len(decoded) and names == names.lower():
            # What ASGI servers hand over (lower-case names, each once): this map is the
            # one __post_init__ would build, so it is kept (decoding a signed request's
            # headers: 41k instructions before, with a second pass and map; 25k now).
            return cls._with_map(method, raw_path, raw_query, tuple(decoded), body, header_map)
        return cls(method, raw_path, raw_query, tuple(decoded), body)

    @classmethod
    def _with_map(
        cls,
        method: str,
        raw_path: bytes,
        raw_query: bytes,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        header_map: dict[str, str],
    ) -> ReceivedRequest:
        """The request with its header map already built (``_header_map``'s result for
        these headers), without the dataclass's per-field frozen assignments."""
        request = object.__new__(cls)
        _set_method(request, method)
        _set_raw_path(request, raw_path)
        _set_raw_query(request, raw_query)
        _set_headers(request, headers)
        _set_body(request, body)
        _set_header_map(request, header_map)
        return request

    def __post_init__(self) -> None:
        object.__setattr__(self, "header_map", _header_map(self.headers))

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive); repeated headers joined by ``,``."""
        return self.header_map.get(name.lower())


def _slot_setter(name: str) -> Callable[[ReceivedRequest, Any], None]:
    # The slot's own setter (a frozen dataclass refuses setattr, not its descriptors):
    # half the cost of the object.__setattr__ per field of the dataclass's __init__.
    setter: Callable[[ReceivedRequest, Any], None] = ReceivedRequest.__dict__[name].__set__
    return setter


_set_method, _set_raw_path, _set_raw_query, _set_headers, _set_body, _set_header_map = (
    _slot_setter(name)
    for name in ("method", "raw_path", "raw_query", "headers", "body", "header_map")
)


def _header_map(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    # What ASGI servers hand over: lower-case names, each once, whitespace already trimmed
    # (the checks are cheap; anything else takes the general path below).
    result = {name: value.strip() for name, value in headers}
    if len(result) == len(headers) and "".join(result).islower():
        return result
    result = {}
    for name, value in headers:
        key = name.lower()
        stripped = value.strip()
        result[key] = f"{result[key]},{stripped}" if key in result else stripped
    return result


class ParsedAuthorization(NamedTuple):
    """The parts of an ``Authorization: SDK-HMAC-* Access=…`` header."""

    scheme: SigningAlgorithm
    access_key: str
    signed_headers: tuple[str, ...]
    signature: str  # lower-case hex


_new_tuple = tuple.__new__
_HMAC_SHA256 = SigningAlgorithm.HMAC_SHA256


def parse_authorization(header_value: str) -> ParsedAuthorization:
    """Parse an Authorization header value; raise AuthenticationFailed if it is malformed."""
    if _parse_plain is not None:  # every SDK's plain form in one C call; the rest below
        parsed = _parse_plain(ParsedAuthorization, _HMAC_SHA256, header_value)
        if parsed is not None:
            return parsed
    head, found, signature = header_value.rpartition("Signature=")
    head = head if found else header_value
    # Clients repeat their head: cache it, unless it is long enough to fill memory.
    parse_head = _cached_parse_head if len(head) <= _CACHED_HEAD_MAX else _parse_head
    scheme, access_key, signed_headers = parse_head(head)
    signature = signature.rstrip()
    if not found or _SIGNATURE.fullmatch(signature) is None:
        raise AuthenticationFailed(_MALFORMED)
    # tuple.__new__ directly: the same tuple without NamedTuple's Python-level __new__.
    return _new_tuple(ParsedAuthorization, (scheme, access_key, signed_headers, signature.lower()))


def _parse_head(head: str) -> tuple[SigningAlgorithm, str, tuple[str, ...]]:
    """Scheme, access key and signed headers: parsed once per client, not per request."""
    scheme_token, _, rest = head.strip().partition(" ")
    scheme = _BY_TOKEN.get(scheme_token)
    if scheme is None:
        if scheme_token in _UNSUPPORTED_SCHEMES:
            raise AuthenticationFailed(
                f"unsupported signing algorithm {scheme_token}; "
                f"use {SigningAlgorithm.HMAC_SHA256} or {SigningAlgorithm.HMAC_SM3}"
            )
        raise AuthenticationFailed("unknown authorization scheme")
    match = _AUTHORIZATION_HEAD.fullmatch(rest.lstrip())
    if match is None:
        raise AuthenticationFailed(_MALFORMED)
    access_key, signed = match.group(1, 2)
    return scheme, access_key, tuple(signed.split(";"))


_CACHED_HEAD_MAX = 1024
_cached_parse_head = lru_cache(maxsize=1024)(_parse_head)

"""AK/SK request signing and verification, byte-compatible with the Huawei Cloud SDKs.

Sans-I/O: the caller hands over the received request and the secret key it looked up;
``shared/spec/huaweicloud-auth.md`` §1.3-1.7 is the reference for every rule here.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import importlib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import NamedTuple, Protocol, Self, cast
from urllib.parse import quote_from_bytes, unquote_to_bytes

from imagejobs.domain.errors import AuthenticationFailed, SignatureMismatch
from imagejobs.iam.sm3 import SM3

__all__ = [
    "DEFAULT_MAX_SKEW",
    "ParsedAuthorization",
    "QueryValue",
    "ReceivedRequest",
    "SigningAlgorithm",
    "SigningKey",
    "canonical_query_string",
    "canonical_request",
    "canonical_uri",
    "compute_signature",
    "parse_authorization",
    "payload_hash",
    "sign_request",
    "string_to_sign",
    "verify",
]

DEFAULT_MAX_SKEW = timedelta(minutes=15)
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

QueryValue = str | int | bool


class SigningAlgorithm(StrEnum):
    """The Authorization scheme tokens this service verifies (HMAC schemes only)."""

    HMAC_SHA256 = "SDK-HMAC-SHA256"
    HMAC_SM3 = "SDK-HMAC-SM3"


class _Hash(Protocol):
    """What HMAC needs of a hash object (hashlib's, or the pure-Python SM3)."""

    @property
    def block_size(self) -> int: ...
    def update(self, data: bytes, /) -> None: ...
    def copy(self) -> Self: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class _Scheme:
    token: str  # the Authorization scheme, as plain text for the string to sign
    content_header: str  # the payload-hash header, as the SDK spells it
    content_key: str  # the same, lower-cased for lookups
    empty_hash: str
    # For the short messages of every request (canonical request, HMAC).
    new_hash: Callable[[bytes], _Hash]
    # For bodies, of any size.
    hash_hex: Callable[[bytes], str]


def _openssl_has_sm3() -> bool:
    try:
        hashlib.new("sm3")
    except ValueError:
        return False
    return True


if _openssl_has_sm3():

    def _new_sm3(data: bytes = b"") -> _Hash:
        return hashlib.new("sm3", data)

    def _sm3_hex(data: bytes) -> str:
        return hashlib.new("sm3", data).hexdigest()

else:  # pragma: no cover - depends on how OpenSSL was built

    def _new_sm3(data: bytes = b"") -> _Hash:
        return SM3(data)

    def _sm3_hex(data: bytes) -> str:
        return SM3(data).hexdigest()


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short_message_sha256() -> Callable[[bytes], _Hash]:
    """CPython's own SHA-256 when it has one: for a few hundred bytes OpenSSL's dispatch
    costs more than the hashing, and its larger code falls out of the CPU caches between
    requests (cold, a canonical request's hash and HMAC take 2x longer through OpenSSL).
    Bodies still go through OpenSSL, which is faster on long data."""
    for name in ("_sha2", "_sha256"):  # Python 3.12+, 3.11
        try:
            return cast("Callable[[bytes], _Hash]", importlib.import_module(name).sha256)
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256


_SCHEMES: dict[SigningAlgorithm, _Scheme] = {
    SigningAlgorithm.HMAC_SHA256: _Scheme(
        token=SigningAlgorithm.HMAC_SHA256.value,
        content_header="X-Sdk-Content-Sha256",
        content_key="x-sdk-content-sha256",
        empty_hash="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        new_hash=_short_message_sha256(),
        hash_hex=_sha256_hex,
    ),
    SigningAlgorithm.HMAC_SM3: _Scheme(
        token=SigningAlgorithm.HMAC_SM3.value,
        content_header="X-Sdk-Content-Sm3",
        content_key="x-sdk-content-sm3",
        empty_hash="1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b",
        new_hash=_new_sm3,
        hash_hex=_sm3_hex,
    ),
}

_flatten = chain.from_iterable
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
_SDK_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")
# A path made only of unreserved characters and slashes is already canonical.
_PLAIN_PATH = re.compile(rb"[A-Za-z0-9._~/-]*")
# A query key or value of unreserved characters only is already in canonical form.
_UNRESERVED = re.compile(rb"[A-Za-z0-9._~-]*")


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
        # Values: surrogateescape keeps non-UTF-8 bytes intact, so hashing gives back the wire
        # bytes. Names: Latin-1, so that no non-ASCII name can lower-case into an ASCII one
        # (the Kelvin sign would make "x-sdK-date" an x-sdk-date as UTF-8).
        pairs = headers if isinstance(headers, list | tuple) else list(headers)
        # All decoded at once: HTTP allows no line break inside names or values, and for
        # ASCII names (all HTTP allows) UTF-8 and Latin-1 agree.
        parts = b"\n".join(_flatten(pairs)).decode("utf-8", "surrogateescape").split("\n")
        if len(parts) == 2 * len(pairs) and "".join(parts[0::2]).isascii():
            texts = iter(parts)
            decoded = tuple(zip(texts, texts, strict=True))
        else:
            decoded = tuple(
                [
                    (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
                    for name, value in pairs
                ]
            )
        return cls(method, raw_path, raw_query, decoded, body)

    def __post_init__(self) -> None:
        object.__setattr__(self, "header_map", _header_map(self.headers))

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive); repeated headers joined by ``,``."""
        return self.header_map.get(name.lower())


class ParsedAuthorization(NamedTuple):
    """The parts of an ``Authorization: SDK-HMAC-* Access=…`` header."""

    scheme: SigningAlgorithm
    access_key: str
    signed_headers: tuple[str, ...]
    signature: str  # lower-case hex


class SigningKey:
    """A secret key made ready for HMAC: the padded inner and outer hash states are computed
    once per algorithm, so each verification only hashes the message (RFC 2104)."""

    __slots__ = ("_pads", "secret")

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._pads: dict[str, tuple[_Hash, _Hash]] = {}

    def __repr__(self) -> str:
        return "SigningKey(<secret>)"

    def hmac_hex(self, algorithm: SigningAlgorithm, message: bytes) -> str:
        pads = self._pads.get(algorithm)
        if pads is None:
            pads = self._pads[algorithm] = _hmac_pads(_SCHEMES[algorithm].new_hash, self.secret)
        inner = pads[0].copy()
        inner.update(message)
        outer = pads[1].copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _hmac_pads(new_hash: Callable[[bytes], _Hash], secret: str) -> tuple[_Hash, _Hash]:
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


def parse_authorization(header_value: str) -> ParsedAuthorization:
    """Parse an Authorization header value; raise AuthenticationFailed if it is malformed."""
    head, found, signature = header_value.rpartition("Signature=")
    head = head if found else header_value
    # Clients repeat their head: cache it, unless it is long enough to fill memory.
    parse_head = _cached_parse_head if len(head) <= _CACHED_HEAD_MAX else _parse_head
    scheme, access_key, signed_headers = parse_head(head)
    signature = signature.rstrip()
    if not found or _SIGNATURE.fullmatch(signature) is None:
        raise AuthenticationFailed(_MALFORMED)
    return ParsedAuthorization(scheme, access_key, signed_headers, signature.lower())


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


def canonical_uri(raw_path: str | bytes) -> str:
    """Percent-decode the path once, re-encode each segment, and end it with ``/``."""
    return _canonical_uri(raw_path.encode() if isinstance(raw_path, str) else raw_path)


@lru_cache(maxsize=4096)
def _canonical_uri(path: bytes) -> str:
    if _PLAIN_PATH.fullmatch(path):
        text = path.decode("ascii")
    else:
        text = "/".join(quote_from_bytes(s, safe="~") for s in unquote_to_bytes(path).split(b"/"))
    return text if text.endswith("/") else text + "/"


def _encode_query(pairs: Iterable[tuple[bytes, bytes]]) -> str:
    return "&".join(
        f"{quote_from_bytes(key, safe='~')}={quote_from_bytes(value, safe='~')}"
        for key, value in pairs
    )


def _join_unreserved(pairs: Iterable[tuple[bytes, bytes]]) -> str:
    """_encode_query for pairs made only of unreserved characters: nothing to escape."""
    return "&".join(f"{key.decode('ascii')}={value.decode('ascii')}" for key, value in pairs)


# Clients repeat the same queries (polling, paging): canonicalize each distinct one once.
@lru_cache(maxsize=4096)
def _cached_query_variants(raw: bytes) -> tuple[str, ...]:
    return tuple(_compute_query_variants(raw))


def _compute_query_variants(raw: bytes) -> Iterator[str]:
    pairs: list[tuple[bytes, bytes]] = []
    unreserved = True
    for part in raw.split(b"&"):
        if part:
            key, _, value = part.partition(b"=")
            if _UNRESERVED.fullmatch(key) and _UNRESERVED.fullmatch(value):
                pairs.append((key, value))  # decoding and re-encoding would change nothing
            else:
                unreserved = False
                pairs.append((unquote_to_bytes(key), unquote_to_bytes(value)))
    encode = _join_unreserved if unreserved else _encode_query
    # Sorting decoded UTF-8 bytes is sorting by code point, as the SDK does on text.
    by_key_and_value = encode(sorted(pairs))
    yield by_key_and_value
    # The SDK sorts native values (ids=9 before ids=10) and sends them in that order,
    # so the wire order of repeated keys is what it signed.
    by_key = encode(sorted(pairs, key=itemgetter(0)))
    if by_key != by_key_and_value:
        yield by_key


def canonical_query_string(pairs: Iterable[tuple[str, QueryValue]]) -> str:
    """The canonical query for client-side signing; the SDK also sends it as the wire query."""
    encoded = [
        (key.encode(), (str(value).lower() if isinstance(value, bool) else str(value)).encode())
        for key, value in pairs
    ]
    return _encode_query(sorted(encoded))


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


def _canonical_headers(headers: Mapping[str, str], signed_headers: Sequence[str]) -> str:
    try:
        return "".join([f"{name}:{headers[name].strip()}\n" for name in signed_headers])
    except KeyError as missing:
        raise AuthenticationFailed(
            f"signed header {missing.args[0]} not found in the request"
        ) from None


def canonical_request(
    method: str,
    uri: str,
    query: str,
    *,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    hashed_payload: str,
) -> str:
    """Assemble the canonical request from canonical parts.

    ``headers`` maps lower-case names to values; a signed header missing from it raises
    AuthenticationFailed.
    """
    return (
        f"{method.upper()}\n{uri}\n{query}\n"
        f"{_canonical_headers(headers, signed_headers)}\n"
        f"{';'.join(signed_headers)}\n{hashed_payload}"
    )


def payload_hash(algorithm: SigningAlgorithm, body: bytes, content_hash_header: str | None) -> str:
    """The hash position: empty-body hash, else the content-hash header's value, else hash(body)."""
    scheme = _SCHEMES[algorithm]
    if not body:
        return scheme.empty_hash
    if content_hash_header:
        return content_hash_header
    return scheme.hash_hex(body)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def string_to_sign(algorithm: SigningAlgorithm, sdk_date: str, canonical: str) -> str:
    """``scheme \\n X-Sdk-Date \\n hex(hash(canonical request))``."""
    scheme = _SCHEMES[algorithm]
    return f"{scheme.token}\n{sdk_date}\n{scheme.new_hash(_encode(canonical)).hexdigest()}"


def compute_signature(algorithm: SigningAlgorithm, secret_key: str, to_sign: str) -> str:
    """Lower-case hex HMAC of the string to sign, keyed with the SK's UTF-8 bytes."""
    return SigningKey(secret_key).hmac_hex(algorithm, _encode(to_sign))


def sign_request(
    method: str,
    url_path: str,
    query_pairs: Iterable[tuple[str, QueryValue]],
    headers: Mapping[str, str],
    body: bytes,
    *,
    ak: str,
    sk: str,
    algorithm: SigningAlgorithm,
    now: datetime,
) -> dict[str, str]:
    """Sign like the SDK's ``Signer.sign`` and return the headers to add to ``headers``.

    ``url_path`` is the percent-encoded path to send and ``headers`` must include ``Host``;
    send the query as :func:`canonical_query_string` renders it and header values trimmed,
    as the SDK does. An ``X-Sdk-Date`` already in ``headers`` is kept; otherwise ``now``
    is used.
    """
    if not ak or not sk:
        raise ValueError("both the access key and the secret key are required")
    scheme = _SCHEMES[algorithm]
    lowered = {name.lower(): value for name, value in headers.items()}
    if "host" not in lowered:
        raise ValueError("headers must include Host")
    if "authorization" in lowered:
        raise ValueError("headers already carry an Authorization header")
    added: dict[str, str] = {}
    content_type = lowered.get("content-type")
    # Like the SDK: bodies that are not JSON/BSON are sent outside the signature.
    if content_type and not content_type.startswith(("application/json", "application/bson")):
        added[scheme.content_header] = UNSIGNED_PAYLOAD
    if "x-sdk-date" in lowered:
        sdk_date = lowered["x-sdk-date"].strip()
    else:
        sdk_date = _as_utc(now).strftime(SDK_DATE_FORMAT)
        added["X-Sdk-Date"] = sdk_date
    lowered.update((name.lower(), value) for name, value in added.items())
    signed_headers = sorted(name for name in lowered if "_" not in name)
    canonical = canonical_request(
        method,
        canonical_uri(url_path),
        canonical_query_string(query_pairs),
        headers=lowered,
        signed_headers=signed_headers,
        hashed_payload=payload_hash(
            algorithm, body, lowered.get(scheme.content_key, "").strip() or None
        ),
    )
    signature = compute_signature(algorithm, sk, string_to_sign(algorithm, sdk_date, canonical))
    added["Authorization"] = (
        f"{algorithm} Access={ak}, SignedHeaders={';'.join(signed_headers)}, Signature={signature}"
    )
    return added


def _as_utc(moment: datetime) -> datetime:
    # A naive time is taken as UTC rather than as local time: X-Sdk-Date is always UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@lru_cache(maxsize=256)
def _signed_at(sdk_date: str) -> int | None:
    """X-Sdk-Date in seconds since the epoch (cached: a client signs many requests a second)."""
    match = _SDK_DATE.fullmatch(sdk_date)
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = map(int, match.groups())
        return calendar.timegm(datetime(year, month, day, hour, minute, second).timetuple())
    except ValueError:
        return None


def _epoch_seconds(moment: datetime | float) -> float:
    return moment if isinstance(moment, int | float) else _as_utc(moment).timestamp()


def _check_sdk_date(
    headers: Mapping[str, str], signed_headers: Sequence[str], now: float, max_skew: float
) -> str:
    sdk_date = headers.get("x-sdk-date")
    if sdk_date is None:
        raise AuthenticationFailed("X-Sdk-Date header not found")
    if "x-sdk-date" not in signed_headers:
        raise AuthenticationFailed("x-sdk-date must be listed in SignedHeaders")
    signed_at = _signed_at(sdk_date)
    if signed_at is None:
        raise AuthenticationFailed("X-Sdk-Date must be a UTC time formatted like 20250101T000000Z")
    if abs(now - signed_at) > max_skew:
        raise AuthenticationFailed(
            f"signature expired, signature time:{sdk_date},"
            f"server time:{time.strftime(SDK_DATE_FORMAT, time.gmtime(now))}"
        )
    return sdk_date


def _check_security_token(
    headers: Mapping[str, str], signed_headers: Sequence[str], expected: str
) -> None:
    received = headers.get("x-security-token")
    if received is None:
        raise AuthenticationFailed("X-Security-Token is required for a temporary access key")
    if "x-security-token" not in signed_headers:
        raise AuthenticationFailed("x-security-token must be listed in SignedHeaders")
    if not hmac.compare_digest(_encode(received), _encode(expected)):
        raise SignatureMismatch("invalid security token")


def verify(
    request: ReceivedRequest,
    secret_key: str | SigningKey,
    now: datetime | float,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    *,
    authorization: ParsedAuthorization | None = None,
    security_token: str | None = None,
) -> None:
    """Check the request's AK/SK signature with ``secret_key``; raise AuthenticationFailed.

    ``now`` is the server's time (a datetime, or seconds since the epoch). Pass a
    :class:`SigningKey` to verify many requests of one key, ``authorization`` when it was
    already parsed to look up the SK, and ``security_token`` when the access key is
    temporary (it must then be sent and signed).
    """
    headers = request.header_map
    if authorization is None:
        header_value = headers.get("authorization")
        if header_value is None:
            raise AuthenticationFailed("x-auth-token not found")
        authorization = parse_authorization(header_value)
    algorithm, _, signed_headers, signature = authorization
    sdk_date = _check_sdk_date(
        headers, signed_headers, _epoch_seconds(now), max_skew.total_seconds()
    )
    if security_token is not None:
        _check_security_token(headers, signed_headers, security_token)

    scheme = _SCHEMES[algorithm]
    key = SigningKey(secret_key) if isinstance(secret_key, str) else secret_key
    raw_path, raw_query = request.raw_path, request.raw_query
    prefix = f"{request.method.upper()}\n{canonical_uri(raw_path)}\n"
    suffix = f"\n{_canonical_headers(headers, signed_headers)}\n{';'.join(signed_headers)}\n"
    body = request.body
    content_hash = headers.get(scheme.content_key) or None
    payload_hashes = [payload_hash(algorithm, body, content_hash)]
    # Python SDK hashes an empty body even with the header; the Go SDK uses the header.
    if not body and content_hash and content_hash != scheme.empty_hash:
        payload_hashes.append(content_hash)

    queries = _cached_query_variants(
        raw_query.encode() if isinstance(raw_query, str) else raw_query
    )
    for query in queries:
        for hashed_payload in payload_hashes:
            canonical = f"{prefix}{query}{suffix}{hashed_payload}"
            to_sign = string_to_sign(algorithm, sdk_date, canonical).encode()
            if hmac.compare_digest(key.hmac_hex(algorithm, to_sign), signature):
                return
    first_canonical = f"{prefix}{queries[0]}{suffix}{payload_hashes[0]}"
    echoed = _encode(first_canonical).decode("utf-8", "replace").replace("\n", "|")
    raise SignatureMismatch(f"verify aksk signature fail, canonicalRequest:{echoed}")

"""The canonical request and the string to sign, built the same way by the signer and
the verifier (``shared/spec/huaweicloud-auth.md`` §1.4-1.5)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from urllib.parse import quote_from_bytes, unquote_to_bytes

from imagejobs.domain.errors import AuthenticationFailed
from imagejobs.iam.signing.schemes import SCHEMES, SigningAlgorithm, SigningKey, encode

SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

QueryValue = str | int | bool

# A path made only of unreserved characters and slashes is already canonical.
_PLAIN_PATH = re.compile(rb"[A-Za-z0-9._~/-]*")
# A query key or value of unreserved characters only is already in canonical form.
_UNRESERVED = re.compile(rb"[A-Za-z0-9._~-]*")
# Longest path or query whose canonical form is remembered. SDK requests are far shorter;
# 4,096 cached entries of the 16 KiB a request head may hold kept ~150 MB per worker
# alive for anyone who knows an access key (bad signatures are canonicalized too).
_CACHED_INPUT_MAX = 512


def canonical_uri(raw_path: str | bytes) -> str:
    """Percent-decode the path once, re-encode each segment, and end it with ``/``."""
    path = raw_path.encode() if isinstance(raw_path, str) else raw_path
    if len(path) > _CACHED_INPUT_MAX:
        return _compute_canonical_uri(path)
    return _canonical_uri(path)


def _compute_canonical_uri(path: bytes) -> str:
    if _PLAIN_PATH.fullmatch(path):
        text = path.decode("ascii")
    else:
        text = "/".join(quote_from_bytes(s, safe="~") for s in unquote_to_bytes(path).split(b"/"))
    return text if text.endswith("/") else text + "/"


_canonical_uri = lru_cache(maxsize=4096)(_compute_canonical_uri)


def _encode_query(pairs: Iterable[tuple[bytes, bytes]]) -> str:
    return "&".join(
        f"{quote_from_bytes(key, safe='~')}={quote_from_bytes(value, safe='~')}"
        for key, value in pairs
    )


def _join_unreserved(pairs: Iterable[tuple[bytes, bytes]]) -> str:
    """_encode_query for pairs made only of unreserved characters: nothing to escape."""
    return "&".join(f"{key.decode('ascii')}={value.decode('ascii')}" for key, value in pairs)


def cached_query_variants(raw: bytes) -> tuple[str, ...]:
    """The canonical queries a received raw query may have been signed as (§1.7)."""
    if len(raw) > _CACHED_INPUT_MAX:
        return tuple(_compute_query_variants(raw))
    return _cached_query_variants(raw)


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
    encode_pairs = _join_unreserved if unreserved else _encode_query
    # Sorting decoded UTF-8 bytes is sorting by code point, as the SDK does on text.
    by_key_and_value = encode_pairs(sorted(pairs))
    yield by_key_and_value
    # The SDK sorts native values (ids=9 before ids=10) and sends them in that order,
    # so the wire order of repeated keys is what it signed.
    by_key = encode_pairs(sorted(pairs, key=itemgetter(0)))
    if by_key != by_key_and_value:
        yield by_key


def canonical_query_string(pairs: Iterable[tuple[str, QueryValue]]) -> str:
    """The canonical query for client-side signing; the SDK also sends it as the wire query."""
    encoded = [
        (key.encode(), (str(value).lower() if isinstance(value, bool) else str(value)).encode())
        for key, value in pairs
    ]
    return _encode_query(sorted(encoded))


def canonical_headers(headers: Mapping[str, str], signed_headers: Sequence[str]) -> str:
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
        f"{canonical_headers(headers, signed_headers)}\n"
        f"{';'.join(signed_headers)}\n{hashed_payload}"
    )


def payload_hash(algorithm: SigningAlgorithm, body: bytes, content_hash_header: str | None) -> str:
    """The hash position: empty-body hash, else the content-hash header's value, else hash(body)."""
    scheme = SCHEMES[algorithm]
    if not body:
        return scheme.empty_hash
    if content_hash_header:
        return content_hash_header
    return scheme.hash_hex(body)


def string_to_sign(algorithm: SigningAlgorithm, sdk_date: str, canonical: str) -> str:
    """``scheme \\n X-Sdk-Date \\n hex(hash(canonical request))``."""
    scheme = SCHEMES[algorithm]
    return f"{scheme.token}\n{sdk_date}\n{scheme.new_hash(encode(canonical)).hexdigest()}"


def compute_signature(algorithm: SigningAlgorithm, secret_key: str, to_sign: str) -> str:
    """Lower-case hex HMAC of the string to sign, keyed with the SK's UTF-8 bytes."""
    return SigningKey(secret_key).hmac_hex(algorithm, encode(to_sign))


def as_utc(moment: datetime) -> datetime:
    # A naive time is taken as UTC rather than as local time: X-Sdk-Date is always UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

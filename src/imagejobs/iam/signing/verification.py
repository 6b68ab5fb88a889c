"""Server-side verification of an AK/SK signature from the received request
(``shared/spec/huaweicloud-auth.md`` §1.7). Sans-I/O: the caller hands over the request
and the secret key it looked up."""

from __future__ import annotations

import calendar
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache

from imagejobs.domain.errors import AuthenticationFailed, SignatureMismatch
from imagejobs.iam.signing.canonical import (
    _CACHED_INPUT_MAX,
    SDK_DATE_FORMAT,
    _cached_query_variants,
    _canonical_uri,
    as_utc,
    cached_query_variants,
    canonical_headers,
    canonical_uri,
    payload_hash,
)
from imagejobs.iam.signing.parsing import ParsedAuthorization, ReceivedRequest, parse_authorization
from imagejobs.iam.signing.schemes import (
    SCHEMES,
    UNSIGNED_PAYLOAD,
    Scheme,
    SigningAlgorithm,
    SigningKey,
    encode,
)

try:  # the C check of SDK-HMAC-SHA256 (_sigcore.c), when it was compiled at install
    from imagejobs.iam.signing import _sigcore as _compiled
except ImportError:  # pragma: no cover - an install without a C compiler
    _compiled = None  # type: ignore[assignment]

DEFAULT_MAX_SKEW = timedelta(minutes=15)
# IamAccess.authenticate's usual signed request (a permanent key's) in one C call, or None
# without the module: see _sigcore.c's authenticate_plain and docs/signing-c.md.
authenticate_plain = None if _compiled is None else _compiled.authenticate_plain
_SDK_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")


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
    return moment if isinstance(moment, int | float) else as_utc(moment).timestamp()


_DEFAULT_SKEW_SECONDS = DEFAULT_MAX_SKEW.total_seconds()


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


def _content_hash(
    headers: Mapping[str, str], signed_headers: Sequence[str], scheme: Scheme, body: bytes
) -> str | None:
    """The content-hash header's value when it may stand for the body, else None.

    Unsigned, it is ignored: anyone could add one to a captured request with another body.
    Signed, it must be UNSIGNED-PAYLOAD (the signer chose to leave the body out) or the
    hash of the body actually received; any other value would let the signature cover a
    body that was never sent.
    """
    value = headers.get(scheme.content_key)
    if not value or scheme.content_key not in signed_headers:
        return None
    if value == UNSIGNED_PAYLOAD:
        return value
    received = scheme.hash_hex(body) if body else scheme.empty_hash
    if value.lower() != received:
        raise SignatureMismatch(
            f"{scheme.content_header} must be {UNSIGNED_PAYLOAD} or the "
            f"{scheme.hash_name} of the body received"
        )
    return value


def _check_security_token(
    headers: Mapping[str, str], signed_headers: Sequence[str], expected: str
) -> None:
    received = headers.get("x-security-token")
    if received is None:
        raise AuthenticationFailed("X-Security-Token is required for a temporary access key")
    if "x-security-token" not in signed_headers:
        raise AuthenticationFailed("x-security-token must be listed in SignedHeaders")
    if not hmac.compare_digest(encode(received), encode(expected)):
        raise SignatureMismatch("invalid security token")


def _header_block(headers: Mapping[str, str], signed_headers: Sequence[str]) -> str:
    try:
        # Header values in header_map are already trimmed (ReceivedRequest's rule).
        # A plain loop: a comprehension is a frame of its own before Python 3.12.
        header_block = ""
        for name in signed_headers:
            header_block += f"{name}:{headers[name]}\n"
    except KeyError as missing:
        raise AuthenticationFailed(
            f"signed header {missing.args[0]} not found in the request"
        ) from None
    return header_block


def plain_pads(key: SigningKey) -> bytes | None:
    """``key``'s HMAC-SHA256 pads as ``authenticate_plain`` takes them; None without the
    C module."""
    return None if _compiled is None else key.sha256_pads(_compiled.hmac_pads)


def _verified_in_c(
    request: ReceivedRequest,
    headers: dict[str, str],
    secret_key: str | SigningKey,
    authorization: ParsedAuthorization,
    now: float,
    max_skew: float,
) -> bool:
    """The usual request (no body, X-Sdk-Date and Host signed, a plain path and query)
    checked from its raw parts in one C call (_sigcore's verify_plain). True only when it
    verified; anything it does not take, a wrong signature included, is False and
    ``verify`` decides it in full."""
    compiled = _compiled
    key = SigningKey(secret_key) if isinstance(secret_key, str) else secret_key
    return (
        compiled.verify_plain(
            key.sha256_pads(compiled.hmac_pads),
            request.method,
            request.raw_path,
            request.raw_query,
            headers,
            request.body,
            authorization.signed_headers,
            authorization.signature,
            now,
            max_skew,
        )
        is True
    )


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
    now_seconds = now if type(now) is float else _epoch_seconds(now)
    skew_seconds = (
        _DEFAULT_SKEW_SECONDS if max_skew is DEFAULT_MAX_SKEW else max_skew.total_seconds()
    )
    if (
        security_token is None
        and algorithm is SigningAlgorithm.HMAC_SHA256
        and _compiled is not None
        and type(headers) is dict
        and _verified_in_c(request, headers, secret_key, authorization, now_seconds, skew_seconds)
    ):
        return
    sdk_date = _check_sdk_date(headers, signed_headers, now_seconds, skew_seconds)
    if "host" not in signed_headers:
        # Unsigned, a captured request could be replayed to another endpoint that trusts
        # the same keys (another region's deployment); every SDK signs it.
        raise AuthenticationFailed("host must be listed in SignedHeaders")
    if security_token is not None:
        _check_security_token(headers, signed_headers, security_token)

    # Every signed request is checked in full here: the usual one (no body, no content-hash
    # header) goes from headers to HMAC without the general form's helper calls.
    scheme = SCHEMES[algorithm]
    key = SigningKey(secret_key) if isinstance(secret_key, str) else secret_key
    raw_path, raw_query = request.raw_path, request.raw_query
    # What from_raw hands over (bytes, short enough to be cached) goes straight to the
    # caches, without canonical_uri's and cached_query_variants' own frames.
    cached_path = type(raw_path) is bytes and len(raw_path) <= _CACHED_INPUT_MAX
    uri = _canonical_uri(raw_path) if cached_path else canonical_uri(raw_path)
    queries = (
        _cached_query_variants(raw_query)
        if type(raw_query) is bytes and len(raw_query) <= _CACHED_INPUT_MAX
        else cached_query_variants(raw_query.encode() if isinstance(raw_query, str) else raw_query)
    )
    body = request.body
    if body or scheme.content_key in headers:
        # A missing signed header is named before the content hash is judged (it is no
        # wrong signature, so it is not counted towards the lockout).
        _header_block(headers, signed_headers)
        content_hash = _content_hash(headers, signed_headers, scheme, body)
        payload_hashes = [payload_hash(algorithm, body, content_hash)]
        # Python SDK hashes an empty body even with the header; the Go SDK uses the header.
        if not body and content_hash and content_hash != scheme.empty_hash:
            payload_hashes.append(content_hash)
    else:
        payload_hashes = [scheme.empty_hash]

    token = scheme.token
    compiled = _compiled
    matched = (
        compiled.signature_matches(
            key.sha256_pads(compiled.hmac_pads),
            request.method,
            uri,
            queries,
            headers,
            signed_headers,
            payload_hashes,
            token,
            sdk_date,
            signature,
        )
        if compiled is not None
        and algorithm is SigningAlgorithm.HMAC_SHA256
        and type(headers) is dict
        else None
    )
    if matched:
        return
    prefix = f"{request.method.upper()}\n{uri}\n"
    suffix = f"\n{_header_block(headers, signed_headers)}\n{';'.join(signed_headers)}\n"
    new_hash = scheme.new_hash
    for query in queries if matched is None else ():
        for hashed_payload in payload_hashes:
            # encode()'s rule inline (surrogates back to the wire's bytes), without its frame.
            canonical = f"{prefix}{query}{suffix}{hashed_payload}".encode(
                "utf-8", "surrogateescape"
            )
            to_sign = f"{token}\n{sdk_date}\n{new_hash(canonical).hexdigest()}"
            if hmac.compare_digest(key.hmac_hex(algorithm, to_sign.encode()), signature):
                return
    shown = {name: _shown_value(name, headers[name]) for name in signed_headers}
    echoed_headers = canonical_headers(shown, signed_headers)
    first_canonical = (
        f"{prefix}{queries[0]}\n{echoed_headers}\n{';'.join(signed_headers)}\n{payload_hashes[0]}"
    )
    echoed = encode(first_canonical).decode("utf-8", "replace").replace("\n", "|")
    raise SignatureMismatch(f"verify aksk signature fail, canonicalRequest:{echoed}")


# Signed headers whose values are credentials: the gateway's message echoes the canonical
# request, and messages end up in logs and bug reports, so these values are left out.
_CREDENTIAL_HEADER = re.compile(r"authorization|cookie|token|secret|password|signature|credential")
REDACTED = "<redacted>"


def _shown_value(name: str, value: str) -> str:
    return REDACTED if _CREDENTIAL_HEADER.search(name) else value

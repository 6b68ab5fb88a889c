"""AK/SK signing and verification against the SDK's own vectors and tampered requests."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagejobs.domain.errors import AuthenticationFailed
from imagejobs.iam.signing import (
    ParsedAuthorization,
    ReceivedRequest,
    SigningAlgorithm,
    SigningKey,
    canonical_query_string,
    canonical_request,
    canonical_uri,
    compute_signature,
    parse_authorization,
    parsing,
    payload_hash,
    sign_request,
    string_to_sign,
    verification,
    verify,
)
from imagejobs.iam.signing.canonical import _cached_query_variants
from imagejobs.iam.signing.canonical import _canonical_uri as _cached_canonical_uri
from imagejobs.iam.signing.parsing import _cached_parse_head
from imagejobs.iam.sm3 import SM3

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "data" / "signing-vectors.json").read_text(encoding="utf-8")
)
SUPPORTED = {algorithm.value for algorithm in SigningAlgorithm}
HMAC_VECTORS = [v for v in VECTORS if v["algorithm"] in SUPPORTED]
OTHER_VECTORS = [v for v in VECTORS if v["algorithm"] not in SUPPORTED]
BY_NAME = {v["name"].split("-")[0]: v for v in VECTORS}
NOW = datetime(2025, 1, 1, tzinfo=UTC)
HOST = "workspace.ap-southeast-1.myhuaweicloud.com"


@pytest.fixture(scope="module", params=["compiled", "python"], autouse=True)
def signature_check(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs twice: with the C check of SDK-HMAC-SHA256 (_sigcore.c) when
    it was compiled, and with the Python alone (what an install without a compiler runs)."""
    if request.param == "compiled" and verification._compiled is None:
        pytest.skip("the C signature check was not compiled (test_signing_compiled.py says why)")
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "python":
            patch.setattr(verification, "_compiled", None)
            patch.setattr(parsing, "_parse_plain", None)
        yield request.param


def wire_request(vector: dict[str, Any], **changes: Any) -> ReceivedRequest:
    """The request exactly as the SDK put it on the wire."""
    path, _, query = vector["wire_uri"].partition("?")
    request = ReceivedRequest(
        method=vector["method"],
        raw_path=path,
        raw_query=query,
        headers=tuple(vector["wire_headers"].items()),
        body=(vector["wire_body"] or "").encode(),
    )
    return replace(request, **changes)


def without_header(request: ReceivedRequest, name: str) -> ReceivedRequest:
    return replace(request, headers=tuple(h for h in request.headers if h[0].lower() != name))


def with_header(request: ReceivedRequest, name: str, value: str) -> ReceivedRequest:
    return replace(request, headers=(*without_header(request, name.lower()).headers, (name, value)))


def signed(
    method: str,
    path: str,
    canonical_query: str,
    *,
    raw_query: str | None = None,
    body: bytes = b"",
    extra_headers: tuple[tuple[str, str], ...] = (),
    hashed_payload: str | None = None,
    algorithm: SigningAlgorithm = SigningAlgorithm.HMAC_SHA256,
    unsigned: tuple[str, ...] = (),
) -> ReceivedRequest:
    """A request signed by hand, to express what other SDKs send (or an attacker).

    Headers named in ``unsigned`` are sent but left out of SignedHeaders.
    """
    headers = {"host": HOST, "x-sdk-date": "20250101T000000Z", **dict(extra_headers)}
    names = sorted(name for name in headers if name not in unsigned)
    canonical = canonical_request(
        method,
        canonical_uri(path),
        canonical_query,
        headers=headers,
        signed_headers=names,
        hashed_payload=hashed_payload or payload_hash(algorithm, body, None),
    )
    signature = compute_signature(
        algorithm, "SKTEST", string_to_sign(algorithm, "20250101T000000Z", canonical)
    )
    authorization = (
        f"{algorithm} Access=AKTEST, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return ReceivedRequest(
        method,
        path,
        canonical_query if raw_query is None else raw_query,
        (*headers.items(), ("Authorization", authorization)),
        body,
    )


def fails_with(request: ReceivedRequest, text: str, **kwargs: Any) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        verify(request, kwargs.pop("secret_key", "SKTEST"), kwargs.pop("now", NOW), **kwargs)
    assert caught.value.code == "APIGW.0301"
    assert caught.value.status == 401
    assert text in caught.value.message


# --- the vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", HMAC_VECTORS, ids=lambda v: v["name"])
def test_every_sdk_vector_verifies(vector: dict[str, Any]) -> None:
    verify(wire_request(vector), vector["sk"], NOW)


@pytest.mark.parametrize("vector", HMAC_VECTORS, ids=lambda v: v["name"])
def test_intermediate_strings_match_the_sdk(vector: dict[str, Any]) -> None:
    algorithm = SigningAlgorithm(vector["algorithm"])
    request = wire_request(vector)
    parsed = parse_authorization(vector["authorization"])
    headers = {name.lower(): value for name, value in request.headers}
    canonical = canonical_request(
        request.method,
        canonical_uri(request.raw_path),
        canonical_query_string(tuple(pair) for pair in vector["query_params"]),
        headers=headers,
        signed_headers=parsed.signed_headers,
        hashed_payload=payload_hash(algorithm, request.body, headers.get("x-sdk-content-sha256")),
    )
    assert canonical == vector["canonical_request"]
    to_sign = string_to_sign(algorithm, "20250101T000000Z", canonical)
    assert to_sign == vector["string_to_sign"]
    assert compute_signature(algorithm, vector["sk"], to_sign) == vector["signature"]


@pytest.mark.parametrize("vector", HMAC_VECTORS, ids=lambda v: v["name"])
def test_sign_request_produces_the_sdk_headers(vector: dict[str, Any]) -> None:
    added = sign_request(
        vector["method"],
        vector["path"],
        [tuple(pair) for pair in vector["query_params"]],
        {**vector["request_headers_in"], "Host": vector["host"]},
        (vector["wire_body"] or "").encode(),
        ak=vector["ak"],
        sk=vector["sk"],
        algorithm=SigningAlgorithm(vector["algorithm"]),
        now=NOW,
    )
    assert added["Authorization"] == vector["authorization"]
    assert added.items() <= vector["wire_headers"].items()
    assert vector["wire_uri"].partition("?")[2] == canonical_query_string(
        tuple(pair) for pair in vector["query_params"]
    )


def test_sign_request_adds_the_date_from_now_and_the_result_verifies() -> None:
    added = sign_request(
        "POST",
        "/v1/proj123/image-servers",
        [],
        {"Host": HOST, "Content-Type": "application/json"},
        b'{"name": "x"}',
        ak="AK",
        sk="SK",
        algorithm=SigningAlgorithm.HMAC_SM3,
        now=NOW + timedelta(seconds=61),
    )
    assert added["X-Sdk-Date"] == "20250101T000101Z"
    request = ReceivedRequest(
        "POST",
        "/v1/proj123/image-servers",
        "",
        (("Host", HOST), ("Content-Type", "application/json"), *added.items()),
        b'{"name": "x"}',
    )
    verify(request, "SK", NOW)


def test_sign_request_needs_host_and_keys() -> None:
    with pytest.raises(ValueError, match="Host"):
        sign_request(
            "GET",
            "/",
            [],
            {},
            b"",
            ak="AK",
            sk="SK",
            algorithm=SigningAlgorithm.HMAC_SHA256,
            now=NOW,
        )
    with pytest.raises(ValueError, match="Authorization"):
        sign_request(
            "GET",
            "/",
            [],
            {"Host": HOST, "Authorization": "x"},
            b"",
            ak="AK",
            sk="SK",
            algorithm=SigningAlgorithm.HMAC_SHA256,
            now=NOW,
        )
    with pytest.raises(ValueError, match="secret key"):
        sign_request(
            "GET",
            "/",
            [],
            {"Host": HOST},
            b"",
            ak="AK",
            sk="",
            algorithm=SigningAlgorithm.HMAC_SHA256,
            now=NOW,
        )


@pytest.mark.parametrize("vector", OTHER_VECTORS, ids=lambda v: v["name"])
def test_schemes_this_service_does_not_verify_are_named(vector: dict[str, Any]) -> None:
    fails_with(wire_request(vector), f"unsupported signing algorithm {vector['algorithm']}")


# --- tampering -----------------------------------------------------------------------------


def test_tampered_query_fails_and_echoes_the_canonical_request() -> None:
    v7 = BY_NAME["V7"]
    request = wire_request(v7)
    tampered = replace(request, raw_query=str(request.raw_query).replace("limit=10", "limit=11"))
    expected = v7["canonical_request"].replace("limit=10", "limit=11").replace("\n", "|")
    fails_with(tampered, f"verify aksk signature fail, canonicalRequest:{expected}")


def test_tampered_body_fails() -> None:
    request = wire_request(BY_NAME["V4"])
    fails_with(replace(request, body=request.body.replace(b"img-srv-1", b"img-srv-2")), "aksk")


def test_tampered_path_fails() -> None:
    fails_with(wire_request(BY_NAME["V1"], raw_path="/v1/proj999/image-server-jobs"), "aksk")


def test_tampered_method_fails() -> None:
    fails_with(wire_request(BY_NAME["V1"], method="DELETE"), "canonicalRequest:DELETE|")


def test_wrong_secret_key_fails() -> None:
    fails_with(wire_request(BY_NAME["V2"]), "verify aksk signature fail", secret_key="SKWRONG")


def test_changed_signed_header_fails() -> None:
    request = with_header(wire_request(BY_NAME["V2"]), "X-Project-Id", "other")
    fails_with(request, "x-project-id:other|")


def test_removed_signed_header_fails() -> None:
    request = without_header(wire_request(BY_NAME["V7"]), "x-custom")
    fails_with(request, "signed header x-custom not found")


def test_unsigned_underscore_header_may_change() -> None:
    request = with_header(wire_request(BY_NAME["V7"]), "X_Underscore", "changed")
    verify(request, "SKTEST", NOW)


def test_a_percent_sign_in_a_signed_header_name_is_part_of_the_name() -> None:
    # SignedHeaders' grammar allows "%" in a name: a verifier that builds the header block
    # from a format made of the names must never let a name act as a format directive.
    request = signed("GET", "/v1/p/items", "", extra_headers=(("x-a%s", "v"), ("x-b%%", "w")))
    verify(request, "SKTEST", NOW)
    fails_with(with_header(request, "x-a%s", "changed"), "x-a%s:changed|x-b%%:w|")


def test_unsigned_payload_leaves_the_body_outside_the_signature() -> None:
    request = wire_request(BY_NAME["V5"])
    verify(replace(request, body=b"anything else"), "SKTEST", NOW)


@pytest.mark.parametrize(
    ("offset", "server_time"),
    [(timedelta(minutes=16), "20250101T001600Z"), (timedelta(minutes=-16), "20241231T234400Z")],
)
def test_date_more_than_15_minutes_off_fails(offset: timedelta, server_time: str) -> None:
    expected = f"signature expired, signature time:20250101T000000Z,server time:{server_time}"
    fails_with(wire_request(BY_NAME["V1"]), expected, now=NOW + offset)
    fails_with(wire_request(BY_NAME["V1"]), expected, now=(NOW + offset).timestamp())


@pytest.mark.parametrize("offset", [timedelta(minutes=15), timedelta(minutes=-15)])
def test_date_exactly_15_minutes_off_is_accepted(offset: timedelta) -> None:
    verify(wire_request(BY_NAME["V1"]), "SKTEST", NOW + offset)


def test_skew_window_is_configurable_and_naive_now_is_utc() -> None:
    request = wire_request(BY_NAME["V1"])
    verify(request, "SKTEST", datetime(2025, 1, 1, 0, 4))  # naive on purpose
    fails_with(
        request, "signature expired", now=NOW + timedelta(minutes=4), max_skew=timedelta(minutes=3)
    )


def test_missing_date_header_fails() -> None:
    fails_with(without_header(wire_request(BY_NAME["V1"]), "x-sdk-date"), "X-Sdk-Date header")


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-01T00:00:00Z",
        "20250101T000000",
        "20251301T000000Z",
        "\uff12\uff10\uff12\uff150101T000000Z",
        "",
    ],
)
def test_malformed_date_fails(value: str) -> None:
    fails_with(with_header(wire_request(BY_NAME["V1"]), "X-Sdk-Date", value), "X-Sdk-Date must")


def test_date_must_be_signed() -> None:
    request = wire_request(BY_NAME["V1"])
    authorization = BY_NAME["V1"]["authorization"].replace("host;x-sdk-date", "host")
    fails_with(with_header(request, "Authorization", authorization), "x-sdk-date must be listed")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "SDK-HMAC-SHA256",
        "SDK-HMAC-SHA256 Access=AKTEST, SignedHeaders=host;x-sdk-date",
        "SDK-HMAC-SHA256 Access=AKTEST, SignedHeaders=host;x-sdk-date, Signature=abc",
        "SDK-HMAC-SHA256 Access=AKTEST, SignedHeaders=host;x-sdk-date, Signature=" + "g" * 64,
        "SDK-HMAC-SHA256 Access=AKTEST, SignedHeaders=Host;X-Sdk-Date, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=AKTEST, SignedHeaders=host;;x-sdk-date, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=, SignedHeaders=host;x-sdk-date, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Signature=" + "0" * 64 + ", Access=AKTEST, SignedHeaders=host",
        "sdk-hmac-sha256 Access=AKTEST, SignedHeaders=host;x-sdk-date, Signature=" + "0" * 64,
        "Bearer abc.def.ghi",
    ],
)
def test_malformed_authorization_fails(value: str) -> None:
    with pytest.raises(AuthenticationFailed, match=r"Authorization header|authorization scheme"):
        parse_authorization(value)
    fails_with(with_header(wire_request(BY_NAME["V1"]), "Authorization", value), "uthorization")


def test_missing_authorization_fails_like_the_gateway() -> None:
    fails_with(
        without_header(wire_request(BY_NAME["V1"]), "authorization"), "x-auth-token not found"
    )


# --- tolerance and compatibility variants --------------------------------------------------


def test_parse_tolerates_whitespace_and_upper_case_hex() -> None:
    signature = BY_NAME["V1"]["signature"]
    value = (
        "  SDK-HMAC-SHA256   Access=AKTEST ,SignedHeaders=host;x-sdk-date,"
        f"  Signature={signature.upper()} "
    )
    assert parse_authorization(value) == ParsedAuthorization(
        SigningAlgorithm.HMAC_SHA256, "AKTEST", ("host", "x-sdk-date"), signature
    )
    verify(with_header(wire_request(BY_NAME["V1"]), "authorization", value), "SKTEST", NOW)


def test_pre_parsed_authorization_is_used() -> None:
    request = wire_request(BY_NAME["V1"])
    parsed = parse_authorization(BY_NAME["V1"]["authorization"])
    verify(without_header(request, "authorization"), "SKTEST", NOW, authorization=parsed)


def test_header_names_are_case_insensitive() -> None:
    request = wire_request(BY_NAME["V2"])
    lowered = replace(request, headers=tuple((n.upper(), v) for n, v in request.headers))
    verify(lowered, "SKTEST", NOW)
    assert lowered.header("x-project-id") == "proj123"
    assert lowered.header("missing") is None


def test_query_order_on_the_wire_does_not_matter() -> None:
    request = wire_request(BY_NAME["V1"], raw_query="limit=5&job_type=CREATE_SERVER")
    verify(request, "SKTEST", NOW)


def test_query_signed_with_numeric_value_order_is_accepted() -> None:
    # The SDK sorts integers numerically (9 < 10) and sends them in that order.
    verify(signed("GET", "/v1/p/items", "ids=9&ids=10&limit=5"), "SKTEST", NOW)


def test_query_encoding_is_canonicalised() -> None:
    # Raw "+" stays a plus sign and "~" may arrive encoded; keys without "=" get an empty value.
    request = signed("GET", "/v1/p/items", "a=x%2By&flag=&t=~", raw_query="t=%7E&flag&a=x%2By")
    verify(request, "SKTEST", NOW)
    verify(replace(request, raw_query="t=%7E&flag&a=x+y"), "SKTEST", NOW)
    fails_with(replace(request, raw_query="t=%7E&flag&a=x%20y"), "a=x%20y&flag=&t=~")


def test_empty_body_with_literal_content_hash_is_accepted() -> None:
    # Go SDK / signing guide: the header's value goes in the hash position even when empty.
    request = signed(
        "GET",
        "/v1/p/items",
        "",
        extra_headers=(("x-sdk-content-sha256", "UNSIGNED-PAYLOAD"),),
        hashed_payload="UNSIGNED-PAYLOAD",
    )
    verify(request, "SKTEST", NOW)


BODY = b'{"items": ["1"]}'
OTHER_BODY = b'{"items": ["2", "3"]}'
SHA256 = SigningAlgorithm.HMAC_SHA256
SM3_SCHEME = SigningAlgorithm.HMAC_SM3
CONTENT_HEADER = {SHA256: "X-Sdk-Content-Sha256", SM3_SCHEME: "X-Sdk-Content-Sm3"}
HASH_NAME = {SHA256: "SHA-256", SM3_SCHEME: "SM3"}
BODY_HASH = {SHA256: hashlib.sha256(BODY).hexdigest(), SM3_SCHEME: SM3(BODY).hexdigest()}


@pytest.mark.parametrize("algorithm", [SHA256, SM3_SCHEME])
def test_an_unsigned_content_hash_cannot_stand_for_another_body(
    algorithm: SigningAlgorithm,
) -> None:
    # The replay of issue 8: a captured write, another body, the original body's hash in an
    # unsigned content-hash header. The header is ignored and the body received is hashed.
    captured = signed("PATCH", "/v1/p/items", "", body=BODY, algorithm=algorithm)
    verify(captured, "SKTEST", NOW)
    forged = replace(
        with_header(captured, CONTENT_HEADER[algorithm], BODY_HASH[algorithm]), body=OTHER_BODY
    )
    fails_with(forged, "verify aksk signature fail")


@pytest.mark.parametrize("algorithm", [SHA256, SM3_SCHEME])
def test_a_signed_content_hash_must_be_the_body_received(algorithm: SigningAlgorithm) -> None:
    header = CONTENT_HEADER[algorithm]
    honest = signed(
        "PATCH",
        "/v1/p/items",
        "",
        body=BODY,
        algorithm=algorithm,
        extra_headers=((header.lower(), BODY_HASH[algorithm].upper()),),
        hashed_payload=BODY_HASH[algorithm].upper(),
    )
    verify(honest, "SKTEST", NOW)  # a client may sign the real hash, in either case
    name = HASH_NAME[algorithm]
    fails_with(
        replace(honest, body=OTHER_BODY),
        f"{header} must be UNSIGNED-PAYLOAD or the {name} of the body received",
    )
    made_up = signed(
        "POST",
        "/v1/p/items",
        "",
        body=BODY,
        algorithm=algorithm,
        extra_headers=((header.lower(), "0" * 64),),
        hashed_payload="0" * 64,
    )
    fails_with(made_up, f"the {name} of the body received")
    # A missing signed header is named first, as before the C check: it is not a wrong
    # signature, so it does not count towards the (AK, address) lockout.
    fails_with(without_header(made_up, "x-sdk-date"), "X-Sdk-Date header not found")
    unlisted = signed(
        "POST",
        "/v1/p/items",
        "",
        body=BODY,
        algorithm=algorithm,
        extra_headers=((header.lower(), "0" * 64), ("x-custom", "1")),
        hashed_payload="0" * 64,
    )
    with pytest.raises(AuthenticationFailed) as caught:
        verify(without_header(unlisted, "x-custom"), "SKTEST", NOW)
    assert type(caught.value) is AuthenticationFailed  # not SignatureMismatch
    assert "signed header x-custom not found" in caught.value.message


def test_a_signed_unsigned_payload_still_leaves_the_body_out() -> None:
    def unsigned_payload(*unsigned: str) -> ReceivedRequest:
        return signed(
            "PUT",
            "/v1/p/items",
            "",
            body=BODY,
            extra_headers=(("x-sdk-content-sha256", "UNSIGNED-PAYLOAD"),),
            hashed_payload="UNSIGNED-PAYLOAD",
            unsigned=unsigned,
        )

    verify(replace(unsigned_payload(), body=OTHER_BODY), "SKTEST", NOW)
    # The same value unsigned is ignored: the body is hashed, so the signature fails.
    fails_with(unsigned_payload("x-sdk-content-sha256"), "verify aksk signature fail")


def test_host_must_be_signed() -> None:
    request = signed("GET", "/v1/p/items", "", unsigned=("host",))
    fails_with(request, "host must be listed in SignedHeaders")


def test_the_echoed_canonical_request_leaves_credentials_out() -> None:
    v3 = wire_request(BY_NAME["V3"])
    with pytest.raises(AuthenticationFailed) as caught:
        verify(v3, "SKWRONG", NOW, security_token="SECTOKEN-EXAMPLE")
    assert "SECTOKEN-EXAMPLE" not in caught.value.message
    assert "|x-security-token:<redacted>|" in caught.value.message
    assert "|x-project-id:proj123|" in caught.value.message  # the rest as the gateway shows it
    token_too = signed("GET", "/v1/p/items", "", extra_headers=(("x-auth-token", "TOKEN-1"),))
    fails_with(token_too, "|x-auth-token:<redacted>|", secret_key="SKWRONG")


def test_path_is_decoded_once_and_re_encoded() -> None:
    assert canonical_uri("/v1/proj123/desktops/a%2Fb%20c~d*e/tags") == (
        "/v1/proj123/desktops/a/b%20c~d%2Ae/tags/"
    )
    assert canonical_uri(b"/v1/%C3%A9t%c3%a9/") == "/v1/%C3%A9t%C3%A9/"
    assert canonical_uri("/v1/plain-path_1.2~x") == "/v1/plain-path_1.2~x/"
    assert canonical_uri("") == "/"


def test_security_token_of_a_temporary_key_is_checked() -> None:
    v3 = wire_request(BY_NAME["V3"])
    verify(v3, "SKTEST", NOW, security_token="SECTOKEN-EXAMPLE")
    fails_with(v3, "invalid security token", security_token="OTHER")
    fails_with(
        wire_request(BY_NAME["V2"]),
        "X-Security-Token is required",
        security_token="SECTOKEN-EXAMPLE",
    )


def test_security_token_must_be_signed() -> None:
    request = with_header(wire_request(BY_NAME["V2"]), "X-Security-Token", "SECTOKEN-EXAMPLE")
    fails_with(request, "x-security-token must be listed", security_token="SECTOKEN-EXAMPLE")


def test_non_ascii_header_value_round_trips_through_raw_bytes() -> None:
    headers = {"Host": HOST, "X-Label": "café", "Content-Type": "application/json"}
    added = sign_request(
        "GET",
        "/v1/p/items",
        [("name", "é")],
        headers,
        b"",
        ak="AK",
        sk="SK",
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=NOW,
    )
    raw_headers = [(k.encode(), v.encode()) for k, v in {**headers, **added}.items()]
    request = ReceivedRequest.from_raw(
        "GET", b"/v1/p/items", canonical_query_string([("name", "é")]).encode(), raw_headers, b""
    )
    verify(request, "SK", NOW)
    tampered = ReceivedRequest.from_raw(
        "GET",
        b"/v1/p/items",
        b"name=%C3%A9",
        [(k, v.replace(b"caf\xc3\xa9", b"caf\xe9")) for k, v in raw_headers],
        b"",
    )
    fails_with(tampered, "x-label:caf\ufffd|")


# --- SM3 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
        (b"", "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"),
        (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
    ],
)
def test_pure_python_sm3_matches_the_standard(message: bytes, digest: str) -> None:
    assert SM3(message).hexdigest() == digest
    split = SM3(message[:5])
    clone = split.copy()
    split.update(message[5:])
    clone.update(message[5:])
    assert split.hexdigest() == clone.hexdigest() == digest


def test_pure_python_sm3_works_as_hmac_digest() -> None:
    key, message = b"k" * 100, bytes(range(256)) * 3
    ours = hmac.new(key, message, SM3).hexdigest()
    try:
        hashlib.new("sm3")
    except ValueError:
        pytest.skip("this OpenSSL has no SM3 to compare with")
    assert ours == hmac.new(key, message, "sm3").hexdigest()


def test_raw_headers_are_decoded_trimmed_and_joined_like_the_gateway() -> None:
    raw = [
        (b"host", b"h"),
        (b"x-tag", b"a"),
        (b"X-Tag", b" b "),
        (b"x-sdk-date", b"20250101T000000Z"),
    ]
    request = ReceivedRequest.from_raw("GET", b"/v1/p/items", b"", raw, b"")
    assert request.header_map == {"host": "h", "x-tag": "a,b", "x-sdk-date": "20250101T000000Z"}
    assert request.headers[2] == ("X-Tag", " b ")  # as received
    # What ASGI servers hand over (lower-case, unique, trimmed) is taken as it is.
    plain = ReceivedRequest.from_raw("GET", b"/", b"", [(b"host", b"h"), (b"x-a", b"\xe9")], b"")
    assert plain.header_map == {"host": "h", "x-a": "\udce9"}  # the wire byte, kept
    # A line break cannot come from HTTP; decoded one by one, it still round-trips.
    odd = ReceivedRequest.from_raw("GET", b"/", b"", [(b"x-a", b"1\n2")], b"")
    assert odd.header("X-A") == "1\n2"


_HEADER_NAMES = st.sampled_from(
    [b"host", b"Host", b"x-sdk-date", b"X-Sdk-Date", b"x-a", b"x-\xc0", b"x-\xe0", b"1", b"-"]
)
_HEADER_VALUES = st.binary(max_size=12).filter(lambda v: b"\n" not in v)


@given(st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=6))
@settings(max_examples=300, deadline=None)
def test_raw_headers_make_the_request_the_constructor_makes(
    raw: list[tuple[bytes, bytes]],
) -> None:
    # from_raw builds the header map in its decoding pass when the names are lower case
    # and unique (what ASGI servers hand over); whatever the names, the request must be
    # the one the constructor (and its __post_init__ map) makes of the same headers.
    received = ReceivedRequest.from_raw("GET", b"/p", b"q=1", raw, b"body")
    decoded = tuple(
        (name.decode("latin-1"), value.decode("utf-8", "surrogateescape")) for name, value in raw
    )
    built = ReceivedRequest("GET", b"/p", b"q=1", decoded, b"body")
    assert received == built
    assert received.header_map == built.header_map
    assert type(received.header_map) is type(built.header_map)


def test_a_non_ascii_header_name_never_stands_in_for_an_ascii_one() -> None:
    # As UTF-8, "x-sd\u212a-date" (Kelvin sign) would lower-case to "x-sdk-date".
    kelvin = "\u212a".encode()
    raw = [
        (b"x-sd" + kelvin + b"-date", b"20250101T000000Z"),
        (b"x-auth-to" + kelvin + b"en", b"t"),
    ]
    request = ReceivedRequest.from_raw("GET", b"/", b"", raw, b"")
    assert request.header("x-sdk-date") is None
    assert request.header("x-auth-token") is None


def test_oversized_authorization_heads_are_refused_or_not_kept() -> None:
    signature = "0" * 64
    with pytest.raises(AuthenticationFailed, match="malformed"):
        parse_authorization(
            f"SDK-HMAC-SHA256 Access={'A' * 129}, SignedHeaders=host, Signature={signature}"
        )
    # A long SignedHeaders list still parses, but is not cached (memory stays bounded).
    names = ";".join(f"x-h{i}" for i in range(300))
    before = _cached_parse_head.cache_info().currsize
    parsed = parse_authorization(
        f"SDK-HMAC-SHA256 Access=AK, SignedHeaders={names}, Signature={signature}"
    )
    assert len(parsed.signed_headers) == 300
    assert _cached_parse_head.cache_info().currsize == before


def test_long_paths_and_queries_verify_but_are_not_kept() -> None:
    # Anyone who knows an access key (it is not a secret) gets any request canonicalized,
    # bad signatures included: 4,096 cached 16 KiB heads held ~150 MB per worker.
    path = "/v1/p/items/" + "%7E" * 3000
    query = "a=" + "%21" * 3000 + "&b=2&b=1"
    before = (_cached_query_variants.cache_info(), _cached_canonical_uri.cache_info())
    request = signed("GET", path, "a=" + "%21" * 3000 + "&b=1&b=2", raw_query=query)
    verify(request, "SKTEST", NOW)
    fails_with(replace(request, raw_query=query + "&c=3"), "verify aksk signature fail")
    after = (_cached_query_variants.cache_info(), _cached_canonical_uri.cache_info())
    assert [info.currsize for info in after] == [info.currsize for info in before]
    assert [info.misses for info in after] == [info.misses for info in before]
    # What SDKs send stays cached.
    verify(wire_request(BY_NAME["V1"]), "SKTEST", NOW)
    verify(wire_request(BY_NAME["V1"]), "SKTEST", NOW)
    assert _cached_query_variants.cache_info().hits > after[0].hits


@pytest.mark.parametrize("key_length", [0, 1, 40, 63, 64, 65, 200])
def test_signing_key_hmac_matches_the_standard_library(key_length: int) -> None:
    # SigningKey keeps the padded key's hash states (RFC 2104) instead of rebuilding them.
    secret = ("sk-é" * 100)[:key_length]
    signing_key = SigningKey(secret)
    for message in (b"", b"GET\n/v1/p/\n", bytes(range(256)) * 3):
        expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        assert signing_key.hmac_hex(SigningAlgorithm.HMAC_SHA256, message) == expected
        expected = hmac.new(secret.encode(), message, SM3).hexdigest()
        assert signing_key.hmac_hex(SigningAlgorithm.HMAC_SM3, message) == expected
    assert repr(signing_key) == "SigningKey(<secret>)"  # never the secret itself


# --- the official SDK as an oracle ---------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
_HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@settings(max_examples=150, deadline=None, database=None)
@given(
    algorithm=st.sampled_from(list(SigningAlgorithm)),
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    segments=st.lists(_TEXT.filter(bool), min_size=1, max_size=4),
    query=st.lists(st.tuples(_TEXT.filter(bool), _TEXT), max_size=5),
    custom=st.dictionaries(
        st.sampled_from(["X-Custom", "X-Project-Id", "X_Skip", "User-Agent"]), _HEADER_VALUE
    ),
    content_type=st.sampled_from([None, "application/json", "text/plain"]),
    body=st.binary(max_size=64),
)
def test_whatever_the_sdk_signs_verifies(
    algorithm: SigningAlgorithm,
    method: str,
    segments: list[str],
    query: list[tuple[str, str]],
    custom: dict[str, str],
    content_type: str | None,
    body: bytes,
) -> None:
    sdk_signer = pytest.importorskip("huaweicloudsdkcore.signer.signer")
    sdk_request = pytest.importorskip("huaweicloudsdkcore.sdk_request")
    path = "/v1/" + "/".join(quote(segment, safe="") for segment in segments)
    headers = {"X-Sdk-Date": "20250101T000000Z", **custom}
    if content_type:
        headers["Content-Type"] = content_type
    signer = {
        SigningAlgorithm.HMAC_SHA256: sdk_signer.Signer,
        SigningAlgorithm.HMAC_SM3: sdk_signer.SM3Signer,
    }[algorithm](SimpleNamespace(ak="AKTEST", sk="SKTEST"))
    request = sdk_request.SdkRequest(
        method=method,
        host=HOST,
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    signer.sign(request)

    ours = sign_request(
        method,
        path,
        query,
        {**headers, "Host": HOST},
        body,
        ak="AKTEST",
        sk="SKTEST",
        algorithm=algorithm,
        now=NOW,
    )
    assert ours["Authorization"] == request.header_params["Authorization"]
    wire_path, _, wire_query = request.uri.partition("?")
    received = ReceivedRequest(
        method, wire_path, wire_query, tuple(request.header_params.items()), body
    )
    verify(received, "SKTEST", NOW)


@pytest.mark.parametrize(
    "now",
    [
        datetime(2025, 1, 1, 8, 1, 1, tzinfo=timezone(timedelta(hours=8))),
        datetime(2025, 1, 1, 0, 1, 1),  # naive is taken as UTC
    ],
)
def test_sign_request_writes_the_date_in_utc(now: datetime) -> None:
    added = sign_request(
        "GET",
        "/",
        [],
        {"Host": HOST},
        b"",
        ak="AK",
        sk="SK",
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=now,
    )
    assert added["X-Sdk-Date"] == "20250101T000101Z"

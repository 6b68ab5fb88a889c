"""The C check of SDK-HMAC-SHA256 signatures (_sigcore.c) against the Python it stands in
for: on random requests, valid or tampered, both must accept the same ones and refuse the
others with the same error. test_signing.py runs all its tests against both too."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime
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
    parse_authorization,
    parsing,
    sign_request,
    verification,
    verify,
)
from imagejobs.iam.signing.canonical import cached_query_variants, canonical_uri
from imagejobs.iam.signing.schemes import SCHEMES

compiled = verification._compiled
needs_compiled = pytest.mark.skipif(compiled is None, reason="the C check was not compiled")
NOW = 1_735_689_600.0  # 2025-01-01T00:00:00Z
HOST = "workspace.ap-southeast-1.myhuaweicloud.com"


def test_the_c_check_was_built_by_the_install() -> None:
    # pip install builds it wherever a C compiler is (hatch_build.py); without one the
    # install still works, in Python alone. Here (dev and CI) the compiler is there.
    if os.environ.get("IMAGEJOBS_PURE_PYTHON", "").lower() in ("1", "true", "yes"):
        pytest.skip("IMAGEJOBS_PURE_PYTHON asked for the Python alone")
    assert compiled is not None, "run pip install -e . again with a C compiler"


@needs_compiled
@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=300))
def test_both_compressions_are_sha256(data: bytes) -> None:
    assert compiled is not None
    expected = hashlib.sha256(data).digest()
    assert compiled.sha256(data, True) == expected  # portable C
    assert compiled.sha256(data, False) == expected  # SHA extensions where the CPU has them


@needs_compiled
@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000])
def test_block_boundaries(length: int) -> None:
    assert compiled is not None
    data = bytes(range(256)) * 4
    assert compiled.sha256(data[:length], True) == hashlib.sha256(data[:length]).digest()
    assert compiled.sha256(data[:length], False) == hashlib.sha256(data[:length]).digest()


@needs_compiled
@pytest.mark.parametrize("length", [1, 40, 63, 64, 65, 200])
def test_hmac_pads_are_the_rfc_2104_key_blocks(length: int) -> None:
    # A signature made with pads of this key verifies; one of the key's HMAC is the oracle.
    secret = ("sk-é" * 100)[:length]
    request = _request(secret, "GET", "/v1/p/jobs", [("limit", "10")], {}, b"")
    assert _outcome(request, secret, use_compiled=True) is None
    assert _c_answer(request, secret) is True
    message = b"any message"
    assert (
        SigningKey(secret).hmac_hex(SigningAlgorithm.HMAC_SHA256, message)
        == hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    )


def _request(
    secret: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> ReceivedRequest:
    sent = {"Host": HOST, "X-Sdk-Date": "20250101T000000Z", **headers}
    sent |= sign_request(
        method,
        path,
        query,
        sent,
        body,
        ak="AKTEST",
        sk=secret,
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=datetime.fromtimestamp(NOW, UTC),
    )
    raw_query = "&".join(f"{key}={value}" for key, value in query)
    raw = [
        (name.lower().encode(), value.encode("utf-8", "surrogateescape"))
        for name, value in sent.items()
    ]
    return ReceivedRequest.from_raw(method, path.encode(), raw_query.encode(), raw, body)


def _outcome(request: ReceivedRequest, secret: str, *, use_compiled: bool) -> Any:
    """None when verify accepts the request, else the error's type and message."""
    with pytest.MonkeyPatch.context() as patch:
        if not use_compiled:
            patch.setattr(verification, "_compiled", None)
        try:
            verify(request, SigningKey(secret), NOW)
        except AuthenticationFailed as error:
            return type(error), error.message
    return None


def _c_answer(request: ReceivedRequest, secret: str) -> bool | None:
    """What the C module itself says (True, False, None: not handled) for a request."""
    assert compiled is not None
    parsed = parse_authorization(request.header_map["authorization"])
    return compiled.signature_matches(
        compiled.hmac_pads(secret.encode()),
        request.method,
        canonical_uri(request.raw_path),
        cached_query_variants(
            bytes(request.raw_query, "ascii")
            if isinstance(request.raw_query, str)
            else request.raw_query
        ),
        dict(request.header_map),
        parsed.signed_headers,
        [SCHEMES[SigningAlgorithm.HMAC_SHA256].empty_hash],
        "SDK-HMAC-SHA256",
        request.header_map["x-sdk-date"],
        parsed.signature,
    )


_ASCII = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="&=?#%"),
    min_size=1,
    max_size=10,
)
_ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10)
_HEADER_VALUE = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24),
    st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs", "Cc")), max_size=8),
)


@needs_compiled
@settings(max_examples=400, deadline=None, database=None)
@given(
    secret=st.text(min_size=1, max_size=80).filter(lambda s: "\x00" not in s),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "get"]),
    segments=st.lists(st.one_of(_ASCII, _ANY_TEXT.filter(bool)), min_size=1, max_size=4),
    query=st.lists(st.tuples(_ASCII, _ASCII), max_size=4),
    custom=st.dictionaries(
        st.sampled_from(["X-Custom", "X-Project-Id", "User-Agent", "Content-Type"]),
        _HEADER_VALUE,
    ),
    body=st.sampled_from([b"", b"{}", b'{"a": 1}']),
    tamper=st.sampled_from(["none", "signature", "header", "query", "method", "secret", "date"]),
)
def test_the_c_check_and_the_python_agree(
    secret: str,
    method: str,
    segments: list[str],
    query: list[tuple[str, str]],
    custom: dict[str, str],
    body: bytes,
    tamper: str,
) -> None:
    path = "/v1/" + "/".join(quote(segment, safe="") for segment in segments)
    request = _request(secret, method, path, query, custom, body)
    if tamper == "signature":
        authorization = request.header_map["authorization"]
        flipped = "0" if authorization[-1] != "0" else "1"
        request = _replace_header(request, "authorization", authorization[:-1] + flipped)
    elif tamper == "header":
        request = _replace_header(request, "host", "other.example.com")
    elif tamper == "query":
        request = ReceivedRequest.from_raw(
            request.method, request.raw_path, _query_plus(request), _raw(request), body
        )
    elif tamper == "method":
        request = ReceivedRequest.from_raw(
            "PATCH", request.raw_path, request.raw_query, _raw(request), body
        )
    elif tamper == "secret":
        secret += "x"
    elif tamper == "date":
        request = _replace_header(request, "x-sdk-date", "20250101T000001Z")
    with_c = _outcome(request, secret, use_compiled=True)
    assert with_c == _outcome(request, secret, use_compiled=False)
    assert (with_c is None) == (tamper == "none")


def _query_plus(request: ReceivedRequest) -> bytes:
    query = (
        request.raw_query if isinstance(request.raw_query, bytes) else request.raw_query.encode()
    )
    return query + b"&zz=1" if query else b"zz=1"


def _raw(request: ReceivedRequest) -> list[tuple[bytes, bytes]]:
    return [
        (name.encode("latin-1"), value.encode("utf-8", "surrogateescape"))
        for name, value in request.headers
    ]


def _replace_header(request: ReceivedRequest, name: str, value: str) -> ReceivedRequest:
    headers = [(n, value if n == name else v) for n, v in request.headers]
    return ReceivedRequest.from_raw(
        request.method,
        request.raw_path,
        request.raw_query,
        [(n.encode("latin-1"), v.encode("utf-8", "surrogateescape")) for n, v in headers],
        request.body,
    )


@needs_compiled
def test_the_usual_request_is_checked_in_c_and_others_are_left_to_python() -> None:
    request = _request("SKTEST", "GET", "/v1/p/jobs", [("limit", "10")], {"X-Project-Id": "p"}, b"")
    assert _c_answer(request, "SKTEST") is True
    assert _c_answer(request, "SKOTHER") is False
    # Non-ASCII text (a header value here) is left to the Python path, which still accepts it.
    accented = _request("SKTEST", "GET", "/v1/p/jobs", [], {"X-Custom": "café"}, b"")
    assert _c_answer(accented, "SKTEST") is None
    assert _outcome(accented, "SKTEST", use_compiled=True) is None
    # A missing signed header: not the C's to word; the Python says which one.
    headers = [h for h in _raw(request) if h[0] != b"x-project-id"]
    missing = ReceivedRequest.from_raw("GET", b"/v1/p/jobs", b"limit=10", headers, b"")
    assert _c_answer(missing, "SKTEST") is None
    error_type, message = _outcome(missing, "SKTEST", use_compiled=True)
    assert error_type is AuthenticationFailed
    assert message.endswith("signed header x-project-id not found in the request")


_HEADER_NAME = st.one_of(
    st.sampled_from([b"host", b"x-sdk-date", b"authorization", b"x-project-id", b"accept"]),
    st.binary(min_size=1, max_size=6),  # upper case, non-ASCII, anything
)
_HEADER_BYTES = st.one_of(
    st.binary(max_size=12),  # not always UTF-8
    st.text(st.sampled_from(" \t\x0b\x0c\x1c\x1f\x85\xa0\u3000aé€"), max_size=8).map(str.encode),
)


@needs_compiled
@settings(max_examples=500, deadline=None, database=None)
@given(headers=st.lists(st.tuples(_HEADER_NAME, _HEADER_BYTES), max_size=6))
def test_headers_decoded_in_c_are_those_from_raw_decodes(
    headers: list[tuple[bytes, bytes]],
) -> None:
    with_c = ReceivedRequest.from_raw("GET", b"/", b"", headers, b"")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parsing, "_new_request", None)
        in_python = ReceivedRequest.from_raw("GET", b"/", b"", headers, b"")
    assert with_c == in_python
    assert with_c.header_map == in_python.header_map


@needs_compiled
def test_what_asgi_servers_hand_over_is_decoded_in_c() -> None:
    assert compiled is not None
    headers = [(b"host", b"example.com"), (b"x-custom", b" caf\xc3\xa9 "), (b"x-raw", b"\xff")]
    decoded, header_map = compiled.decode_headers(headers) or ((), {})
    assert decoded == (("host", "example.com"), ("x-custom", " café "), ("x-raw", "\udcff"))
    assert header_map == {"host": "example.com", "x-custom": "café", "x-raw": "\udcff"}
    # Upper-case or repeated names are the Python's (it lower-cases and joins them).
    assert compiled.decode_headers([(b"Host", b"a")]) is None
    assert compiled.decode_headers([(b"a", b"1"), (b"a", b"2")]) is None


# --- the Authorization header parsed in C ---------------------------------------------------


def _parsed(value: str) -> object:
    """parse_authorization's answer: the parsed tuple, or the error's type and message."""
    try:
        return parse_authorization(value)
    except AuthenticationFailed as error:
        return (type(error), str(error))


def _parsed_in_python(value: str) -> object:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parsing, "_parse_plain", None)
        return _parsed(value)


_SPACES = st.text(st.just(" "), max_size=3)
_PLAIN = st.builds(
    "SDK-HMAC-SHA256 {}Access={}{},{}SignedHeaders={}{},{}Signature={}{}".format,
    _SPACES,
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=",="),
        min_size=1,
        max_size=128,
    ),
    _SPACES,
    _SPACES,
    st.lists(
        st.text(st.sampled_from("ahx-z09_.!~#`|"), min_size=1, max_size=8), min_size=1, max_size=5
    ).map(";".join),
    _SPACES,
    _SPACES,
    st.text(st.sampled_from("0123456789abcdefABCDEF"), min_size=64, max_size=64),
    _SPACES,
)


@st.composite
def _near_plain(draw: st.DrawFn) -> str:
    """A plain header with one character inserted, replaced or removed."""
    value = draw(_PLAIN)
    at = draw(st.integers(min_value=0, max_value=len(value)))
    char = draw(st.sampled_from(" \t\n\x0b\x1c\x85\u3000,;=:AZaz09gG-é\x7f\x00"))
    how = draw(st.sampled_from(["insert", "replace", "remove"]))
    if how == "insert":
        return value[:at] + char + value[at:]
    if how == "replace":
        return value[:at] + char + value[at + 1 :]
    return value[:at] + value[at + 1 :]


_AUTHORIZATION = st.one_of(_PLAIN, _near_plain(), st.text(max_size=80))


@needs_compiled
@settings(max_examples=1500, deadline=None, database=None)
@given(value=_AUTHORIZATION)
def test_authorization_parsed_in_c_is_what_python_parses(value: str) -> None:
    # The C either declines (None: the Python decides, errors included) or gives exactly
    # the Python's result; it never accepts what the Python refuses.
    assert compiled is not None
    answer = compiled.parse_authorization(ParsedAuthorization, SigningAlgorithm.HMAC_SHA256, value)
    if answer is not None:
        expected = _parsed_in_python(value)
        assert type(answer) is ParsedAuthorization
        assert answer == expected
        assert answer.scheme is SigningAlgorithm.HMAC_SHA256
        assert all(type(part) is str for part in (answer.access_key, answer.signature))
        assert all(type(name) is str for name in answer.signed_headers)
    assert _parsed(value) == _parsed_in_python(value)


@needs_compiled
@pytest.mark.parametrize(
    "value",
    [
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=" + "aB" * 32,
        "SDK-HMAC-SHA256   Access=A;K!, SignedHeaders=host ,  Signature=" + "0" * 64 + "  ",
        "SDK-HMAC-SHA256 Access=" + "K" * 128 + ",SignedHeaders=a;b;c,Signature=" + "f" * 64,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders="
        + ";".join(f"x-h{i}" for i in range(300))
        + ", Signature="
        + "0" * 64,
    ],
)
def test_every_sdks_authorization_is_parsed_in_c(value: str) -> None:
    assert compiled is not None
    answer = compiled.parse_authorization(ParsedAuthorization, SigningAlgorithm.HMAC_SHA256, value)
    assert answer is not None
    assert answer == _parsed_in_python(value)


@needs_compiled
@pytest.mark.parametrize(
    "value",
    [
        " SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256\tAccess=AK, SignedHeaders=host, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=AK,\tSignedHeaders=host, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=" + "0" * 64 + "\t",
        "SDK-HMAC-SHA256 Access=AKé, SignedHeaders=host, Signature=" + "0" * 64,
        "SDK-HMAC-SM3 Access=AK, SignedHeaders=host, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=" + "K" * 129 + ", SignedHeaders=host, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=Host, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=" + "0" * 63,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=" + "0" * 65,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=" + "0" * 9000,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host",
        "",
    ],
)
def test_anything_else_is_left_to_the_python_parser(value: str) -> None:
    assert compiled is not None
    answer = compiled.parse_authorization(ParsedAuthorization, SigningAlgorithm.HMAC_SHA256, value)
    assert answer is None
    # ... which still decides it (accepting the tolerated forms, wording every error).
    assert _parsed(value) == _parsed_in_python(value)


@needs_compiled
def test_parse_authorization_refuses_wrong_arguments() -> None:
    assert compiled is not None
    with pytest.raises(TypeError):
        compiled.parse_authorization(dict, SigningAlgorithm.HMAC_SHA256, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        compiled.parse_authorization(ParsedAuthorization, "x")  # type: ignore[call-arg]
    assert compiled.parse_authorization(ParsedAuthorization, None, b"SDK") is None  # type: ignore[arg-type]


# --- the usual request verified from its raw parts in C (verify_plain) ---------------------

_UNRESERVED_TEXT = st.text(st.sampled_from("aZ09._~-"), max_size=4)


def _plain_answer(request: ReceivedRequest, secret: str, now: float) -> bool | None:
    assert compiled is not None
    parsed = parse_authorization(request.header_map["authorization"])
    return compiled.verify_plain(
        compiled.hmac_pads(secret.encode()),
        request.method,
        request.raw_path,
        request.raw_query,
        dict(request.header_map),
        request.body,
        parsed.signed_headers,
        parsed.signature,
        now,
        900.0,
    )


def _python_outcome(request: ReceivedRequest, secret: str, now: float) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(verification, "_compiled", None)
        try:
            verify(request, SigningKey(secret), now)
        except AuthenticationFailed as error:
            return type(error), error.message
    return None


def _signed_at(
    moment: datetime,
    path: str,
    pairs: list[tuple[str, str]],
    raw_query: str,
    headers: dict[str, str],
    secret: str = "SKTEST",
) -> ReceivedRequest:
    sent = {"Host": HOST, **headers}
    sent |= sign_request(
        "GET",
        path,
        pairs,
        sent,
        b"",
        ak="AKTEST",
        sk=secret,
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=moment,
    )
    raw = [(name.lower().encode(), value.encode()) for name, value in sent.items()]
    return ReceivedRequest.from_raw("GET", path.encode(), raw_query.encode(), raw, b"")


@needs_compiled
@settings(max_examples=600, deadline=None, database=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    ),
    offset=st.sampled_from([0.0, 1.5, -899.0, 900.0, -900.0, 900.5, -901.0, 86400.0]),
    segments=st.lists(_UNRESERVED_TEXT, max_size=4),
    pairs=st.lists(st.tuples(_UNRESERVED_TEXT.filter(bool), _UNRESERVED_TEXT), max_size=6),
    bare=st.booleans(),
    trailing=st.sampled_from(["", "&", "&&"]),
    headers=st.dictionaries(st.sampled_from(["X-Project-Id", "Accept"]), _UNRESERVED_TEXT),
)
def test_the_usual_request_is_verified_in_c_exactly_when_python_accepts_it(
    moment: datetime,
    offset: float,
    segments: list[str],
    pairs: list[tuple[str, str]],
    bare: bool,
    trailing: str,
    headers: dict[str, str],
) -> None:
    # Plain parts (unreserved path and query, no body): the C takes them all, so it must
    # say True exactly when the Python accepts: the date window to the second (leap years
    # included), repeated keys, empty parts and bare keys in the query.
    path = "/" + "/".join(segments)
    raw_query = "&".join(f"{k}" if bare and not v else f"{k}={v}" for k, v in pairs) + trailing
    request = _signed_at(moment.replace(microsecond=0), path, pairs, raw_query, headers)
    now = moment.replace(microsecond=0).timestamp() + offset
    in_python = _python_outcome(request, "SKTEST", now)
    assert (_plain_answer(request, "SKTEST", now) is True) == (in_python is None)
    assert _plain_answer(request, "SKOTHER", now) is None  # refused by the Python alone


@needs_compiled
@settings(max_examples=500, deadline=None, database=None)
@given(
    path=st.one_of(st.just("/"), st.text(st.sampled_from("a/%2F7E~é+ .-"), max_size=10)),
    raw_query=st.one_of(st.just(""), st.text(st.sampled_from("ab=&%20+é.~-"), max_size=12)),
    date=st.one_of(
        st.just("20250101T000000Z"),
        st.just("20250101T000000Z"),
        st.text(st.sampled_from("0123456789TZ"), min_size=15, max_size=17),
        st.sampled_from(
            [
                "20250229T000000Z",
                "20240229T000000Z",
                "20250101T240000Z",
                "20250101T000060Z",
                "20251301T000000Z",
                "00000101T000000Z",
                "\uff12\uff10\uff12\uff150101T000000Z",
                "20250101t000000z",
            ]
        ),
    ),
    body=st.sampled_from([b"", b"", b"{}"]),
    content_hash=st.sampled_from(
        [None, None, None, "UNSIGNED-PAYLOAD", SCHEMES[SigningAlgorithm.HMAC_SHA256].empty_hash]
    ),
    unsigned=st.sampled_from([None, None, None, "host", "x-sdk-date"]),
)
def test_verify_plain_never_accepts_what_python_refuses(
    path: str,
    raw_query: str,
    date: str,
    body: bytes,
    content_hash: str | None,
    unsigned: str | None,
) -> None:
    # Anything: the C may decline (None) but its True must be the Python's acceptance.
    headers = {"X-Sdk-Date": date}
    if content_hash is not None:
        headers["X-Sdk-Content-Sha256"] = content_hash
    sent = {"Host": HOST, **headers}
    sent |= sign_request(
        "GET",
        "/",
        [],
        sent,
        body,
        ak="AKTEST",
        sk="SKTEST",
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=datetime.fromtimestamp(NOW, UTC),
    )
    sent["X-Sdk-Date"] = date  # the signer sets its own; the received one may be anything
    authorization = sent["Authorization"]
    if unsigned is not None:
        authorization = authorization.replace(f"{unsigned};", "").replace(f";{unsigned}", "")
        sent["Authorization"] = authorization
    raw = [(name.lower().encode(), value.encode()) for name, value in sent.items()]
    request = ReceivedRequest.from_raw("GET", path.encode(), raw_query.encode(), raw, body)
    if _plain_answer(request, "SKTEST", NOW) is True:
        assert _python_outcome(request, "SKTEST", NOW) is None


@needs_compiled
def test_the_benchmarks_request_is_verified_in_one_c_call() -> None:
    pairs = [("limit", "10"), ("offset", "0"), ("job_type", "CREATE_SERVER")]
    request = _signed_at(
        datetime.fromtimestamp(NOW, UTC),
        "/v1/p/image-server-jobs",
        pairs,
        "job_type=CREATE_SERVER&limit=10&offset=0",
        {"X-Project-Id": "p"},
    )
    assert _plain_answer(request, "SKTEST", NOW) is True
    assert _python_outcome(request, "SKTEST", NOW) is None
    # Repeated keys in wire order (the SDK's native sort) match the by-key variant.
    ids = [("ids", "9"), ("ids", "10")]
    repeated = _signed_at(datetime.fromtimestamp(NOW, UTC), "/v1/p/jobs", ids, "ids=9&ids=10", {})
    assert _plain_answer(repeated, "SKTEST", NOW) is True
    assert _python_outcome(repeated, "SKTEST", NOW) is None
    # Outside the window, with a wrong key, a body, a percent-encoded path: left to Python.
    assert _plain_answer(request, "SKTEST", NOW + 901) is None
    assert _plain_answer(request, "SKOTHER", NOW) is None
    encoded = ReceivedRequest.from_raw(
        "GET", b"/v1/p/image%2Dserver-jobs", request.raw_query, _raw(request), b""
    )
    assert _plain_answer(encoded, "SKTEST", NOW) is None
    assert _python_outcome(encoded, "SKTEST", NOW) is None  # the Python still accepts it

"""The C fast paths (_sigcore.c) probed as an attacker would, against the Python reference.

Requests are signed (by the official SDK's signer, this project's signer, or straight from
the canonical request the Python verifier builds for the received bytes) and then mutated:
replayed onto another path, query, method, host or date; headers re-spaced, re-cased,
repeated, emptied, made non-ASCII; a body, a content hash or a security token added; the
SignedHeaders list trimmed. Whatever comes out, ``verify`` must give the same answer, error
message included, with the module and without it: above all, the C must never accept what
the Python refuses. test_signing_compiled.py holds the narrower checks of each C function.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
    parse_authorization,
    parsing,
    sign_request,
    verification,
    verify,
)
from imagejobs.iam.signing.canonical import cached_query_variants, canonical_uri
from imagejobs.iam.signing.schemes import SCHEMES

compiled = verification._compiled
pytestmark = pytest.mark.skipif(compiled is None, reason="the C check was not compiled")
NOW = 1_735_689_600.0  # 2025-01-01T00:00:00Z
SDK_DATE = "20250101T000000Z"
HOST = "workspace.ap-southeast-1.myhuaweicloud.com"
SECRET = "SKTEST"
EMPTY_SHA256 = SCHEMES[SigningAlgorithm.HMAC_SHA256].empty_hash
Draw = Callable[..., Any]  # a strategy's draw: st.DataObject.draw


@dataclass(frozen=True)
class Wire:
    """A request as the ASGI server hands it over."""

    method: str
    path: bytes
    query: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key.lower() == name), None)

    def received(self) -> ReceivedRequest:
        """The request as the server reads it (with whichever decoder is in place)."""
        return ReceivedRequest.from_raw(
            self.method, self.path, self.query, list(self.headers), self.body
        )

    def with_header(self, name: bytes, value: bytes | None) -> Wire:
        """``name`` set to ``value`` in place (appended when absent; removed when None)."""
        if value is None:
            return replace(self, headers=tuple((k, v) for k, v in self.headers if k != name))
        headers = [(k, value if k == name else v) for k, v in self.headers]
        if not any(key == name for key, _ in self.headers):
            headers.append((name, value))
        return replace(self, headers=tuple(headers))


def _outcome(
    wire: Wire,
    *,
    use_c: bool,
    now: float = NOW,
    secret: str = SECRET,
    security_token: str | None = None,
) -> Any:
    """None when verify accepts the request, else the error's type and message; with every
    C path (decoding, parsing, verification) or none of them."""
    with pytest.MonkeyPatch.context() as patch:
        if not use_c:
            patch.setattr(verification, "_compiled", None)
            patch.setattr(parsing, "_parse_plain", None)
            patch.setattr(parsing, "_new_request", None)
        request = wire.received()
        try:
            verify(request, SigningKey(secret), now, security_token=security_token)
        except AuthenticationFailed as error:
            return type(error), error.message
    return None


def _verify_plain(wire: Wire, now: float = NOW, secret: str = SECRET) -> bool | None:
    """verify_plain's own answer for the request (None too when it cannot be asked)."""
    assert compiled is not None
    request = wire.received()
    value = request.header_map.get("authorization")
    try:
        parsed = parse_authorization(value) if value is not None else None
    except AuthenticationFailed:
        return None
    if parsed is None or parsed.scheme is not SigningAlgorithm.HMAC_SHA256:
        return None
    answer: bool | None = compiled.verify_plain(
        compiled.hmac_pads(secret.encode()),
        request.method,
        request.raw_path,
        request.raw_query,
        request.header_map,
        request.body,
        parsed.signed_headers,
        parsed.signature,
        now,
        900.0,
    )
    return answer


def _assert_same(wire: Wire, now: float = NOW, **options: Any) -> Any:
    with_c = _outcome(wire, use_c=True, now=now, **options)
    in_python = _outcome(wire, use_c=False, now=now, **options)
    if not options and _verify_plain(wire, now) is True:
        assert in_python is None, f"the C accepts what the Python refuses: {in_python}"
    assert with_c == in_python
    return with_c


# --- signers ---------------------------------------------------------------------------------


def _wire_headers(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(
        (name.lower().encode("latin-1"), value.encode("utf-8", "surrogateescape"))
        for name, value in headers.items()
    )


def _signed_by_us(
    method: str, path: str, pairs: list[tuple[str, str]], headers: dict[str, str], body: bytes
) -> Wire:
    sent = {"Host": HOST, "X-Sdk-Date": SDK_DATE, **headers}
    sent |= sign_request(
        method,
        path,
        pairs,
        sent,
        body,
        ak="AKTEST",
        sk=SECRET,
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=datetime.fromtimestamp(NOW, UTC),
    )
    query = canonical_query_string(pairs)
    return Wire(method, path.encode(), query.encode(), _wire_headers(sent), body)


def _signed_by_the_sdk(
    method: str, path: str, pairs: list[tuple[str, str]], headers: dict[str, str], body: bytes
) -> Wire:
    signer = pytest.importorskip("huaweicloudsdkcore.signer.signer")
    sdk_request = pytest.importorskip("huaweicloudsdkcore.sdk_request")
    request = sdk_request.SdkRequest(
        method=method,
        host=HOST,
        resource_path=path,
        query_params=list(pairs),
        header_params={"X-Sdk-Date": SDK_DATE, **headers},
        body=body,
    )
    signer.Signer(SimpleNamespace(ak="AKTEST", sk=SECRET)).sign(request)
    wire_path, _, wire_query = request.uri.partition("?")
    return Wire(
        method, wire_path.encode(), wire_query.encode(), _wire_headers(request.header_params), body
    )


def _signed_as_received(
    wire: Wire, names: list[str], variant: int = 0, date: str | None = None
) -> Wire:
    """Sign exactly the canonical request the Python verifier builds for these bytes (any
    path, query or header the wire can carry), listing ``names`` in SignedHeaders; with
    ``date`` in the string to sign instead of X-Sdk-Date when given."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parsing, "_new_request", None)
        request = wire.received()
    headers = request.header_map
    queries = cached_query_variants(wire.query)
    block = "".join(f"{name}:{headers.get(name, '')}\n" for name in names)
    canonical = (
        f"{wire.method.upper()}\n{canonical_uri(wire.path)}\n{queries[variant % len(queries)]}\n"
        f"{block}\n{';'.join(names)}\n{EMPTY_SHA256}"
    )
    sdk_date = headers.get("x-sdk-date", "") if date is None else date
    digest = SCHEMES[SigningAlgorithm.HMAC_SHA256].hash_hex(
        canonical.encode("utf-8", "surrogateescape")
    )
    to_sign = f"SDK-HMAC-SHA256\n{sdk_date}\n{digest}".encode("utf-8", "surrogateescape")
    signature = SigningKey(SECRET).hmac_hex(SigningAlgorithm.HMAC_SHA256, to_sign)
    value = f"SDK-HMAC-SHA256 Access=AKTEST, SignedHeaders={';'.join(names)}, Signature={signature}"
    return wire.with_header(b"authorization", value.encode())


# --- mutations -----------------------------------------------------------------------------


def _parts(query: bytes) -> list[bytes]:
    return query.split(b"&") if query else []


def _mutate_path(wire: Wire, draw: Draw) -> Wire:
    path = wire.path
    at = draw(st.integers(0, len(path)))
    how = draw(
        st.sampled_from(
            ["slash", "strip", "double", "dot", "dotdot", "empty", "char", "percent", "upper"]
        )
    )
    if how == "slash":
        path += b"/"
    elif how == "strip":
        path = path.rstrip(b"/")
    elif how == "double":
        path = path[:at] + b"/" + path[at:]
    elif how == "dot":
        path = path[:at] + b"/." + path[at:]
    elif how == "dotdot":
        path = path[:at] + b"/.." + path[at:]
    elif how == "empty":
        path = b""
    elif how == "char":
        char = draw(st.sampled_from([b"a", b"+", b" ", b"%", b"%2F", b"%2f", b"\xc3\xa9", b"~"]))
        path = path[:at] + char + path[at + 1 :]
    elif how == "percent" and at < len(path):
        path = path[:at] + f"%{path[at]:02X}".encode() + path[at + 1 :]
    elif how == "upper":
        path = path.upper()
    return replace(wire, path=path)


def _mutate_query(wire: Wire, draw: Draw) -> Wire:
    parts = _parts(wire.query)
    at = draw(st.integers(0, len(parts)))
    part = parts[at] if at < len(parts) else b"k=v"
    how = draw(
        st.sampled_from(
            [
                "shuffle",
                "empty_part",
                "bare",
                "equals",
                "repeat",
                "drop",
                "value",
                "second_equals",
                "plus",
                "percent",
                "empty_key",
                "swap_values",
                "upper",
                "add",
                "clear",
            ]
        )
    )
    if how == "shuffle":
        parts = draw(st.permutations(parts))
    elif how == "empty_part":
        parts.insert(at, b"")
    elif how == "bare":
        parts[at:at] = [part.partition(b"=")[0]]
        parts = parts[: at + 1] + parts[at + 2 :]
    elif how == "equals":
        parts[at:at] = [part + b"="]
        parts = parts[: at + 1] + parts[at + 2 :]
    elif how == "repeat":
        parts.insert(at, part)
    elif how == "drop":
        parts = parts[:at] + parts[at + 1 :]
    elif how == "value":
        parts = [*parts[:at], part.partition(b"=")[0] + b"=x", *parts[at + 1 :]]
    elif how == "second_equals":
        parts = [*parts[:at], part + b"=", *parts[at + 1 :]]
    elif how == "plus":
        parts = [*parts[:at], part.replace(b"=", b"=+", 1) + b"+", *parts[at + 1 :]]
    elif how == "percent":
        parts = [*parts[:at], b"%61" + part, *parts[at + 1 :]]
    elif how == "empty_key":
        parts.insert(at, b"=" + part.partition(b"=")[2])
    elif how == "swap_values" and len(parts) >= 2:
        first, second = parts[0].partition(b"="), parts[-1].partition(b"=")
        parts[0], parts[-1] = first[0] + b"=" + second[2], second[0] + b"=" + first[2]
    elif how == "upper":
        parts = [p.upper() for p in parts]
    elif how == "add":
        parts.append(b"zz=1")
    elif how == "clear":
        parts = []
    return replace(wire, query=b"&".join(parts))


_VALUES = [
    b"",
    b" ",
    b"\t",
    b"a  b",
    b"a\tb",
    b"x",
    b"X",
    b"\xc3\xa9",
    b"\xff",
    b"\xed\xa0\x80",  # an encoded surrogate: not UTF-8
    b"\x1c",
    b"\xc2\xa0",
]


def _mutate_header(wire: Wire, draw: Draw) -> Wire:
    names = [name for name, _ in wire.headers if name != b"authorization"]
    name = draw(st.sampled_from(names)) if names else b"host"
    value = wire.header(name) or b""
    how = draw(
        st.sampled_from(
            [
                "pad",
                "inner",
                "set",
                "append",
                "upper_name",
                "repeat",
                "remove",
                "unsigned",
                "content_hash",
                "token",
                "host",
                "date",
            ]
        )
    )
    if how == "pad":  # the server trims: both accept
        pad = draw(st.sampled_from([b" ", b"\t", b"  ", b"\x0b", b"\x1f", b"\xc2\xa0"]))
        return wire.with_header(name, pad + value + pad)
    if how == "inner":
        return wire.with_header(name, value.replace(b" ", draw(st.sampled_from([b"  ", b"\t"]))))
    if how == "set":
        return wire.with_header(name, draw(st.sampled_from(_VALUES)))
    if how == "append":
        return wire.with_header(name, value + draw(st.sampled_from(_VALUES)))
    if how == "upper_name":  # names are case-insensitive: both accept
        headers = tuple((k.upper() if k == name else k, v) for k, v in wire.headers)
        return replace(wire, headers=headers)
    if how == "repeat":
        return replace(wire, headers=(*wire.headers, (name, draw(st.sampled_from(_VALUES)))))
    if how == "remove":
        return wire.with_header(name, None)
    if how == "unsigned":
        return wire.with_header(b"x-unsigned", b"anything")
    if how == "content_hash":
        content = draw(st.sampled_from([b"UNSIGNED-PAYLOAD", EMPTY_SHA256.encode(), b"", b"0"]))
        return wire.with_header(b"x-sdk-content-sha256", content)
    if how == "token":
        return wire.with_header(b"x-security-token", b"token")
    if how == "host":
        return wire.with_header(b"host", draw(st.sampled_from([b"evil.example.com", b"HOST"])))
    date = draw(
        st.sampled_from(
            [b"20250101T000001Z", b"20241231T235959Z", b"20250101T001500Z", b"20250101T001501Z"]
        )
    )
    return wire.with_header(b"x-sdk-date", date)


def _mutate_authorization(wire: Wire, draw: Draw) -> Wire:
    value = (wire.header(b"authorization") or b"").decode("latin-1")
    head, _, signature = value.rpartition("Signature=")
    how = draw(
        st.sampled_from(["unsign", "reorder", "repeat", "upper", "flip", "spaces", "scheme"])
    )
    names_part = head.partition("SignedHeaders=")[2].rstrip(", ")
    names = names_part.split(";")
    if how == "unsign":
        gone = draw(st.sampled_from(["host", "x-sdk-date", names[0]]))
        kept = [n for n in names if n != gone] or ["host"]
        value = value.replace(f"SignedHeaders={names_part}", f"SignedHeaders={';'.join(kept)}")
    elif how == "reorder":
        shuffled = draw(st.permutations(names))
        value = value.replace(f"SignedHeaders={names_part}", f"SignedHeaders={';'.join(shuffled)}")
    elif how == "repeat":
        value = value.replace(f"SignedHeaders={names_part}", f"SignedHeaders={names_part};host")
    elif how == "upper":  # hex digits of either case: both accept
        value = head + "Signature=" + signature.upper()
    elif how == "flip":
        flipped = "0" if signature[:1] != "0" else "1"
        value = head + "Signature=" + flipped + signature[1:]
    elif how == "spaces":
        value = value.replace(", ", draw(st.sampled_from([" , ", ",", ",\t", ",  "])))
    else:
        value = value.replace("SDK-HMAC-SHA256", "SDK-HMAC-SM3")
    return wire.with_header(b"authorization", value.encode("latin-1"))


def _mutate_method(wire: Wire, draw: Draw) -> Wire:
    method = draw(st.sampled_from(["get", "Get", "POST", "PATCH", "G\u0130T", "GET "]))
    return replace(wire, method=method)


def _mutate_body(wire: Wire, draw: Draw) -> Wire:
    return replace(wire, body=draw(st.sampled_from([b"x", b"{}", b"\x00"])))


_MUTATIONS = {
    "path": _mutate_path,
    "query": _mutate_query,
    "header": _mutate_header,
    "authorization": _mutate_authorization,
    "method": _mutate_method,
    "body": _mutate_body,
}

# --- what is signed ------------------------------------------------------------------------

_UNRESERVED = "aZ09._~-"
_SEGMENT = st.one_of(
    st.text(st.sampled_from(_UNRESERVED), max_size=6),
    st.sampled_from([".", "..", "", "a b", "é", "+", "%", "/"]),
)
_QUERY_TEXT = st.one_of(
    st.text(st.sampled_from(_UNRESERVED), max_size=5),
    st.sampled_from(["", "=", "a=b", "+", " ", "é", "&", "%41"]),
)
_HEADER_TEXT = st.one_of(
    st.text(st.sampled_from("aZ09-_. ;:,/\t"), max_size=10),
    st.sampled_from(["", "a  b", "a\tb", "é", "\u3000x"]),
)


@st.composite
def _signed_request(draw: st.DrawFn) -> Wire:
    method = draw(st.sampled_from(["GET", "GET", "DELETE", "POST", "get"]))
    path = "/" + "/".join(quote(s, safe="") for s in draw(st.lists(_SEGMENT, max_size=4)))
    pairs = draw(st.lists(st.tuples(_QUERY_TEXT, _QUERY_TEXT), max_size=5))
    headers = draw(st.dictionaries(st.sampled_from(["X-Project-Id", "Accept"]), _HEADER_TEXT))
    body = draw(st.sampled_from([b"", b"", b"", b"{}"]))
    signer = draw(st.sampled_from(["ours", "sdk", "received"]))
    if signer == "ours":
        return _signed_by_us(method, path, pairs, headers, body)
    if signer == "sdk":
        return _signed_by_the_sdk(method, path, pairs, headers, body)
    # Raw wire parts the SDK would never send, signed as the verifier canonicalizes them.
    raw_path = draw(st.sampled_from([path.encode(), b"", b"//a/./b/../", b"/a//", b"/a/.."]))
    parts = [f"{k}={v}".encode() if v or draw(st.booleans()) else k.encode() for k, v in pairs]
    extra = draw(st.lists(st.sampled_from([b"", b"=", b"=v", b"k", b"k=", b"k=v", b"K=v"])))
    query = b"&".join(draw(st.permutations(parts + extra)))
    sent = {"host": HOST, "x-sdk-date": SDK_DATE, **{k.lower(): v for k, v in headers.items()}}
    wire = Wire(method, raw_path, query, _wire_headers(sent), b"")
    names = sorted(sent)
    names = draw(st.sampled_from([names, names[::-1], [*names, "host"]]))
    return _signed_as_received(wire, names, draw(st.integers(0, 1)))


@settings(max_examples=500, deadline=None, database=None)
@given(
    wire=_signed_request(),
    mutations=st.lists(st.sampled_from(sorted(_MUTATIONS)), max_size=3),
    now=st.sampled_from([NOW, NOW, NOW + 900.0, NOW - 900.0, NOW + 900.5, NOW - 901.0]),
    data=st.data(),
)
def test_mutated_requests_get_the_same_answer_with_and_without_the_module(
    wire: Wire, mutations: list[str], now: float, data: st.DataObject
) -> None:
    for mutation in mutations:
        wire = _MUTATIONS[mutation](wire, data.draw)
    _assert_same(wire, now)


@settings(max_examples=100, deadline=None, database=None)
@given(
    wire=_signed_request(),
    mutations=st.lists(st.sampled_from(sorted(_MUTATIONS)), max_size=2),
    data=st.data(),
)
def test_a_temporary_keys_requests_get_the_same_answer_with_and_without_the_module(
    wire: Wire, mutations: list[str], data: st.DataObject
) -> None:
    # verify_plain is not asked at all for a temporary key: its token is Python's to check.
    if data.draw(st.booleans()):
        wire = wire.with_header(b"x-security-token", b"token")
    for mutation in mutations:
        wire = _MUTATIONS[mutation](wire, data.draw)
    _assert_same(wire, security_token="token")


# --- replays: one request's signature on another -------------------------------------------


def _with_authorization_of(target: Wire, source: Wire) -> Wire:
    return target.with_header(b"authorization", source.header(b"authorization"))


_REPLAYS = [
    ("GET", "/v1/p/jobs", [("limit", "10")], {}, "GET", "/v1/q/jobs", [("limit", "10")], {}),
    ("GET", "/v1/p/jobs", [("limit", "10")], {}, "GET", "/v1/p/jobs", [("limit", "1000")], {}),
    ("GET", "/v1/p/jobs", [("a", "1")], {}, "GET", "/v1/p/jobs", [("a", "1"), ("a", "1")], {}),
    ("GET", "/v1/p/jobs", [("a", "")], {}, "GET", "/v1/p/jobs", [("", "a")], {}),
    ("GET", "/v1/p/jobs", [("ab", "")], {}, "GET", "/v1/p/jobs", [("a", "b")], {}),
    ("GET", "/v1/p/jobs", [], {}, "DELETE", "/v1/p/jobs", [], {}),
    ("GET", "/v1/p/jobs", [], {}, "GET", "/v1/p/jobs/", [], {}),  # the same canonical URI
    ("GET", "/v1/p/jobs", [], {}, "GET", "/v1/p//jobs", [], {}),
    ("GET", "/v1/p/jobs", [], {}, "GET", "/v1/p/x/../jobs", [], {}),
    ("GET", "/", [], {}, "GET", "", [], {}),  # the same canonical URI
    ("GET", "/v1/p/jobs", [], {"X-Project-Id": "p"}, "GET", "/v1/p/jobs", [], {}),
    ("GET", "/v1/p/jobs", [], {"X-A": "a b"}, "GET", "/v1/p/jobs", [], {"X-A": "a  b"}),
    ("GET", "/v1/p/jobs", [], {"X-A": "a b"}, "GET", "/v1/p/jobs", [], {"X-A": "a\tb"}),
    ("GET", "/v1/p/jobs", [], {"Host": "other"}, "GET", "/v1/p/jobs", [], {}),
    ("GET", "/v1/p/jobs", [], {"X-Sdk-Date": "20250101T000001Z"}, "GET", "/v1/p/jobs", [], {}),
]


@pytest.mark.parametrize("replay", _REPLAYS, ids=[str(i) for i in range(len(_REPLAYS))])
def test_a_signature_replayed_onto_another_request_gets_the_pythons_answer(
    replay: tuple[Any, ...],
) -> None:
    method, path, pairs, headers, *target = replay
    source = _signed_by_us(method, path, pairs, headers, b"")
    signed_target = _signed_by_us(*target, b"")
    replayed = _with_authorization_of(signed_target, source)
    outcome = _assert_same(replayed)
    # Only where both canonicalize alike may the signature stand.
    same_canonical = source.header(b"authorization") == signed_target.header(b"authorization")
    assert (outcome is None) == same_canonical


# --- the C's limits: at and past them, the Python still decides ------------------------------


def _plain(path: bytes, query: bytes, method: str = "GET") -> Wire:
    wire = Wire(method, path, query, _wire_headers({"host": HOST, "x-sdk-date": SDK_DATE}))
    return _signed_as_received(wire, ["host", "x-sdk-date"])


@pytest.mark.parametrize(
    ("path_size", "in_c"), [(1, True), (511, True), (512, True), (513, False), (4096, False)]
)
def test_a_path_up_to_512_bytes_is_verified_in_c_and_longer_in_python(
    path_size: int, in_c: bool
) -> None:
    for ending in (b"a", b"/"):
        path = (b"/" + b"a" * path_size)[: path_size - 1] + ending
        wire = _plain(path, b"")
        assert len(wire.path) == path_size
        assert _verify_plain(wire) is (True if in_c else None)
        assert _assert_same(wire) is None
        assert _assert_same(replace(wire, path=path[:-1] + b"b")) is not None


@pytest.mark.parametrize(
    ("query", "in_c"),
    [
        (b"&".join(b"k%02d" % i for i in range(64)), True),  # 64 bare keys: 64 '=' added
        (b"&".join(b"k%02d" % i for i in range(65)), False),
        (b"&".join(b"k=%02d" % (63 - i) for i in range(64)), True),
        (b"&".join(b"k=%02d" % (64 - i) for i in range(65)), False),
        (b"&" * 512, True),  # only empty parts: no pairs at all
        (b"&" * 511 + b"a", True),
        (b"a=" + b"b" * 510, True),  # 512 bytes
        (b"a=" + b"b" * 511, False),  # 513 bytes
        (b"&".join([b"k" * 7] * 64), True),  # 511 bytes that canonicalize to 575
        (b"&".join([b"z" * 6 + b"=", b"a"] * 32), True),  # repeated keys, sort ties
        (b"&".join([b"=", b"=a", b"a", b"a="] * 16), True),  # empty keys and bare ones
    ],
)
def test_a_query_at_the_c_limits_is_verified_there_and_past_them_in_python(
    query: bytes, in_c: bool
) -> None:
    wire = _plain(b"/v1/p/jobs", query)
    assert _verify_plain(wire) is (True if in_c else None)
    assert _assert_same(wire) is None
    assert _assert_same(replace(wire, query=query + b"&zz")) is not None


def test_both_canonical_query_variants_are_verified_in_c_and_no_third() -> None:
    query = b"ids=9&ids=10&a=&a"
    for variant in (0, 1):
        wire = _signed_as_received(
            Wire("GET", b"/", query, _wire_headers({"host": HOST, "x-sdk-date": SDK_DATE})),
            ["host", "x-sdk-date"],
            variant,
        )
        assert _verify_plain(wire) is True
        assert _assert_same(wire) is None
        # The wire order of the repeated key is what the by-key variant keeps.
        swapped = replace(wire, query=b"ids=10&ids=9&a=&a")
        assert _assert_same(swapped) == _outcome(swapped, use_c=False)
        assert (_assert_same(swapped) is None) == (variant == 0)


@pytest.mark.parametrize(("size", "in_c"), [(32, True), (33, False)])
def test_a_long_method_is_left_to_python(size: int, in_c: bool) -> None:
    wire = _plain(b"/", b"", method="M" * size)
    assert _verify_plain(wire) is (True if in_c else None)
    assert _assert_same(wire) is None


@pytest.mark.parametrize(
    "date",
    [
        "20240229T120000Z",  # a leap day
        "20000229T000000Z",
        "19700101T000000Z",
        "00010101T000000Z",
        "99991231T235959Z",
    ],
)
def test_the_date_window_is_the_pythons_for_any_valid_date(date: str) -> None:
    signed_at = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    wire = Wire("GET", b"/", b"", _wire_headers({"host": HOST, "x-sdk-date": date}))
    wire = _signed_as_received(wire, ["host", "x-sdk-date"])
    for offset, accepted in ((0.0, True), (900.0, True), (-900.0, True), (900.001, False)):
        assert _verify_plain(wire, signed_at + offset) is (True if accepted else None)
        assert (_assert_same(wire, signed_at + offset) is None) is accepted


@pytest.mark.parametrize(
    "date", ["19000229T000000Z", "20250431T000000Z", "00000101T000000Z", "2025010 T000000Z"]
)
def test_an_impossible_date_is_refused_by_python_even_when_signed(date: str) -> None:
    wire = Wire("GET", b"/", b"", _wire_headers({"host": HOST, "x-sdk-date": date}))
    wire = _signed_as_received(wire, ["host", "x-sdk-date"])
    assert _verify_plain(wire) is None
    assert _assert_same(wire) is not None


# --- odd arguments: never a crash, a leak, or NULL without an exception ---------------------


class _Text(str):
    """A str subclass whose methods lie: the C must not be fooled by what it inherits."""

    def __hash__(self) -> int:
        return hash(str(self))

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other)

    def upper(self) -> str:  # type: ignore[override]
        return "GET"


def _arguments() -> list[Any]:
    wire = _plain(b"/v1/p/jobs", b"limit=10")
    request = wire.received()
    parsed = parse_authorization(request.header_map["authorization"])
    assert compiled is not None
    return [
        compiled.hmac_pads(SECRET.encode()),
        request.method,
        request.raw_path,
        request.raw_query,
        dict(request.header_map),
        b"",
        parsed.signed_headers,
        parsed.signature,
        NOW,
        900.0,
    ]


_ODD: list[Any] = [
    None,
    1,
    1.5,
    "text",
    b"bytes",
    bytearray(b"x"),
    (),
    ("host", 1),
    (b"host",),
    [],
    {},
    {"host": 1},
    {"host": b"x"},
    {1: "x"},
    "é" * 3,
    "\udcff",
    _Text("get"),
    float("nan"),
]


def test_verify_plain_declines_odd_arguments_without_crashing() -> None:
    assert compiled is not None
    good = _arguments()
    assert compiled.verify_plain(*good) is True
    for position in range(len(good)):
        for odd in _ODD:
            arguments = list(good)
            arguments[position] = odd
            try:
                answer = compiled.verify_plain(*arguments)
            except TypeError:
                continue
            # Only a method that spells GET in ASCII, or a wider window, may still verify.
            assert answer is None or (position == 1 and str(odd).upper() == "GET") or odd == 1.5
    with pytest.raises(TypeError):
        compiled.verify_plain(*good[:9])


def test_signature_matches_declines_odd_arguments_without_crashing() -> None:
    assert compiled is not None
    pads, method, path, query, headers, _, names, signature, *_ = _arguments()
    good = [
        pads,
        method,
        canonical_uri(path),
        cached_query_variants(query),
        headers,
        names,
        [EMPTY_SHA256],
        "SDK-HMAC-SHA256",
        SDK_DATE,
        signature,
    ]
    assert compiled.signature_matches(*good) is True
    for position in range(len(good)):
        for odd in _ODD:
            arguments = list(good)
            arguments[position] = odd
            try:
                answer = compiled.signature_matches(*arguments)
            except TypeError:
                continue
            assert answer is None or answer is False or (position == 1 and odd == "get")
    for tuple_of_odd in [(1,), (b"x",), ("é",)]:
        arguments = list(good)
        arguments[3] = tuple_of_odd
        assert compiled.signature_matches(*arguments) in (None, False)
        arguments = list(good)
        arguments[6] = list(tuple_of_odd)
        assert compiled.signature_matches(*arguments) in (None, False)


def test_new_request_and_parse_declines_odd_arguments_without_crashing() -> None:
    assert compiled is not None
    for headers in [[(b"a", "x")], [("a", b"x")], [(b"a",)], [b"ab"], [[b"a", b"b"]], None, "ab"]:
        assert compiled.new_request(ReceivedRequest, "GET", b"/", b"", headers, b"") is None
        assert compiled.decode_headers(headers) is None
    for value in _ODD:
        answer = compiled.parse_authorization(
            ParsedAuthorization, SigningAlgorithm.HMAC_SHA256, value
        )
        assert answer is None


def _refcounts(objects: list[Any]) -> list[int]:
    return [sys.getrefcount(item) for item in objects]


def test_no_call_leaks_a_reference_whatever_it_answers() -> None:
    # Every branch (verified, declined early, declined late, wrong signature, TypeError) run
    # many times: the reference counts of the arguments and of the singletons it returns
    # must not move (a leaked reference is memory that is never freed, request after request).
    assert compiled is not None
    good = _arguments()
    wrong = list(good)
    wrong[7] = "0" * 64
    missing = list(good)
    missing[4] = {k: v for k, v in good[4].items() if k != "host"}
    late = list(good)
    late[3] = b"a=%20"
    early = list(good)
    early[5] = b"x"
    odd = list(good)
    odd[4] = {"x-sdk-date": 1}
    value = good[4]["authorization"]
    raw = [(k.encode(), v.encode()) for k, v in good[4].items()]
    tracked = [*good, *wrong, *missing, *late, *odd, value, raw, *raw]
    tracked += [SigningAlgorithm.HMAC_SHA256, ParsedAuthorization, ReceivedRequest]
    # The singletons it returns are shared with the whole process (other tests' threads
    # take and drop references meanwhile): a leak there shows as one per call, 2,000.
    singletons = [None, True, False]

    def calls() -> None:
        for arguments in (good, wrong, missing, late, early, odd):
            compiled.verify_plain(*arguments)
        compiled.parse_authorization(ParsedAuthorization, SigningAlgorithm.HMAC_SHA256, value)
        compiled.parse_authorization(ParsedAuthorization, SigningAlgorithm.HMAC_SHA256, "x")
        compiled.new_request(ReceivedRequest, "GET", b"/", b"", raw, b"")
        compiled.new_request(ReceivedRequest, "GET", b"/", b"", [*raw, raw[0]], b"")
        compiled.decode_headers(raw)
        with suppress(TypeError):
            compiled.verify_plain(*good[:3])

    calls()
    gc.collect()
    before = _refcounts(tracked)
    singletons_before = _refcounts(singletons)
    for _ in range(2000):
        calls()
    gc.collect()
    assert _refcounts(tracked) == before
    moved = [a - b for a, b in zip(_refcounts(singletons), singletons_before, strict=True)]
    assert all(abs(change) < 500 for change in moved), moved


# --- what review found: each of these failed before its fix in _sigcore.c -------------------


class _Lying(str):
    """A method whose upper() is another method: the Python signs what upper() says."""

    def upper(self) -> str:  # type: ignore[override]
        return "POST"


def test_a_str_subclass_is_the_pythons_to_read() -> None:
    # The C read a str subclass's bytes while the Python calls its methods: a GET signature
    # was verified in C for a request the Python reads as POST and refuses.
    wire = _plain(b"/v1/p/jobs", b"")
    request = ReceivedRequest.from_raw(
        _Lying("get"), wire.path, wire.query, list(wire.headers), wire.body
    )
    arguments = _arguments()
    arguments[1] = _Lying("get")
    assert compiled is not None
    assert compiled.verify_plain(*arguments) is None
    outcomes: list[str | None] = []
    for use_c in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            if not use_c:
                patch.setattr(verification, "_compiled", None)
            try:
                verify(request, SigningKey(SECRET), NOW)
                outcomes.append(None)
            except AuthenticationFailed as error:
                outcomes.append(error.message)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] is not None  # the Python signs POST


def test_an_untrimmed_header_value_is_the_pythons_to_sign() -> None:
    # The Python signs header values as the map holds them (trimmed by from_raw); the C
    # trimmed them again, so a map with an untrimmed value verified in C over a canonical
    # request the Python never builds.
    arguments = _arguments()
    assert compiled is not None
    assert compiled.verify_plain(*arguments) is True
    for padded in (f" {HOST}", f"{HOST}\t", f"{HOST}\x1c"):
        arguments[4] = {**arguments[4], "host": padded}
        assert compiled.verify_plain(*arguments) is None


def test_a_type_is_not_made_as_a_request() -> None:
    # new_request(type, ...) allocated a zeroed type object and crashed freeing it.
    assert compiled is not None
    for cls in (type, int, tuple):
        with pytest.raises(TypeError):
            compiled.new_request(cls, "GET", b"/", b"", [(b"a", b"b")], b"")
    made = compiled.new_request(ReceivedRequest, "GET", b"/", b"", [(b"a", b"b")], b"")
    assert isinstance(made, ReceivedRequest)
    assert made.header_map == {"a": "b"}


def test_a_header_lookup_that_runs_code_cannot_free_the_date_in_use() -> None:
    # verify_plain borrowed X-Sdk-Date from the map, then looked up the content-hash header,
    # which can run a key's __eq__ (a str subclass colliding with its hash). One that
    # replaced the date left the C hashing the freed old text into the string to sign: a
    # signature over two different dates verified, where the Python refuses.
    later = "20250101T000001Z"
    wire = Wire("GET", b"/", b"", _wire_headers({"host": HOST, "x-sdk-date": later}))
    signed = _signed_as_received(wire, ["host", "x-sdk-date"], date=SDK_DATE)
    request = ReceivedRequest.from_raw("GET", b"/", b"", list(signed.headers), b"")
    parsed = parse_authorization(request.header_map["authorization"])
    headers = dict(request.header_map)
    headers["x-sdk-date"] = "".join(["20250101", "T000000Z"])  # held by the map alone

    class _Swapping(str):
        def __hash__(self) -> int:
            return hash("x-sdk-content-sha256")

        def __eq__(self, other: object) -> bool:
            headers["x-sdk-date"] = later
            return False

    headers[_Swapping("x-other")] = "v"
    assert compiled is not None
    answer = compiled.verify_plain(
        compiled.hmac_pads(SECRET.encode()),
        "GET",
        b"/",
        b"",
        headers,
        b"",
        parsed.signed_headers,
        parsed.signature,
        NOW,
        900.0,
    )
    assert headers["x-sdk-date"] == later
    assert answer is None


@pytest.mark.parametrize("cls", [os.stat_result, time.struct_time])
def test_a_struct_sequence_is_not_made_as_a_parsed_header(cls: type) -> None:
    # Struct sequences are tuple subclasses with hidden fields past their items: made with
    # four items, reading or freeing one went past its memory.
    assert compiled is not None
    value = "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=" + "0" * 64
    with pytest.raises(TypeError):
        compiled.parse_authorization(cls, SigningAlgorithm.HMAC_SHA256, value)
    parsed = compiled.parse_authorization(ParsedAuthorization, SigningAlgorithm.HMAC_SHA256, value)
    assert parsed == _parsed_in_python(value)


def _parsed_in_python(value: str) -> ParsedAuthorization:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parsing, "_parse_plain", None)
        return parse_authorization(value)


# --- authenticate_plain: IamAccess's one C call, against IamAccess's Python path ---------------

NOW_MS = int(NOW * 1000)
PRINCIPAL = object()  # what the key's requests run as: returned as is, never copied
# The key store as authenticate_plain reads it, per state of the signing key "AKTEST":
# (secret in the pads, usable_until), or None when the process knows no such permanent key.
_KEY_STATES: dict[str, tuple[str, float] | None] = {
    "usable": (SECRET, float("inf")),
    "disabled": (SECRET, float("-inf")),
    "usable_1ms_more": (SECRET, float(NOW_MS + 1)),
    "expired_now": (SECRET, float(NOW_MS)),
    "other_secret": ("SKOTHER", float("inf")),
    "unknown": None,
}


def _plain_keys(state: str) -> dict[str, tuple[bytes, float, object]]:
    assert compiled is not None
    known = _KEY_STATES[state]
    if known is None:
        return {"AKOTHER": (compiled.hmac_pads(SECRET.encode()), float("inf"), PRINCIPAL)}
    secret, usable_until = known
    return {"AKTEST": (compiled.hmac_pads(secret.encode()), usable_until, PRINCIPAL)}


def _authenticated_in_c(wire: Wire, state: str, now_ms: int = NOW_MS) -> object:
    """authenticate_plain's answer for the request, built as the server builds it."""
    assert compiled is not None
    request = wire.received()
    authorization = request.header_map.get("authorization")
    if authorization is None:
        return None
    return compiled.authenticate_plain(
        _plain_keys(state),
        authorization,
        request.method,
        request.raw_path,
        request.raw_query,
        request.header_map,
        request.body,
        now_ms,
    )


def _authenticated_in_python(wire: Wire, state: str, now_ms: int = NOW_MS) -> Any:
    """IamAccess.authenticate's steps for a signed request, without any C: PRINCIPAL when
    it accepts, else the error's type and message."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(verification, "_compiled", None)
        patch.setattr(parsing, "_parse_plain", None)
        patch.setattr(parsing, "_new_request", None)
        request = wire.received()
        try:
            authorization = request.header_map.get("authorization")
            if authorization is None:
                raise AuthenticationFailed("x-auth-token not found")
            parsed = parse_authorization(authorization)
            known = _KEY_STATES[state] if parsed.access_key == "AKTEST" else None
            if known is None or now_ms >= known[1]:
                raise AuthenticationFailed(f"ak {parsed.access_key} not exist")
            verify(request, SigningKey(known[0]), now_ms / 1000, authorization=parsed)
        except AuthenticationFailed as error:
            return type(error), error.message
    return PRINCIPAL


def _assert_c_accepts_only_what_python_accepts(
    wire: Wire, state: str, now_ms: int = NOW_MS
) -> object:
    answer = _authenticated_in_c(wire, state, now_ms)
    assert answer is None or answer is PRINCIPAL
    in_python = _authenticated_in_python(wire, state, now_ms)
    if answer is PRINCIPAL:
        assert in_python is PRINCIPAL, f"the C accepts what the Python refuses: {in_python}"
    # ... and it takes what the module's parse_authorization and verify_plain took before
    # it (a usable key's usual request): the fast path is not one that quietly declines
    # everything. An Authorization header the C parser declines (a tab after a comma, say;
    # the Python parser takes it) is declined here too, as it should be.
    if (
        in_python is PRINCIPAL
        and state == "usable"
        and _parsed_in_c(wire)
        and _verify_plain(wire, now_ms / 1000)
    ):
        assert answer is PRINCIPAL
    return answer


def _parsed_in_c(wire: Wire) -> bool:
    """Whether _sigcore's own parse_authorization takes the request's Authorization."""
    assert compiled is not None
    request = wire.received()
    value = request.header_map.get("authorization")
    if value is None:
        return False
    parsed = compiled.parse_authorization(ParsedAuthorization, SigningAlgorithm.HMAC_SHA256, value)
    return parsed is not None


@settings(max_examples=600, deadline=None, database=None)
@given(
    wire=_signed_request(),
    mutations=st.lists(st.sampled_from(sorted(_MUTATIONS)), max_size=2),
    offset_ms=st.sampled_from([0] * 6 + [900_000, -900_000, 900_001, -900_001, 899_999, 1]),
    # Mostly a usable key, so that most examples reach the signature check.
    state=st.sampled_from(["usable"] * 5 + sorted(_KEY_STATES)),
    data=st.data(),
)
def test_authenticate_plain_accepts_only_what_the_python_path_accepts(
    wire: Wire, mutations: list[str], offset_ms: int, state: str, data: st.DataObject
) -> None:
    for mutation in mutations:
        wire = _MUTATIONS[mutation](wire, data.draw)
    _assert_c_accepts_only_what_python_accepts(wire, state, NOW_MS + offset_ms)


@pytest.mark.parametrize("signer", [_signed_by_the_sdk, _signed_by_us])
def test_authenticate_plain_takes_the_sdks_usual_request_and_no_variation_of_it(
    signer: Callable[..., Wire],
) -> None:
    wire = signer("GET", "/v1/p/image-server-jobs", [("job_type", "CREATE_SERVER")], {}, b"")
    assert _assert_c_accepts_only_what_python_accepts(wire, "usable") is PRINCIPAL
    assert _assert_c_accepts_only_what_python_accepts(wire, "usable_1ms_more") is PRINCIPAL
    for state in ("disabled", "expired_now", "other_secret", "unknown"):
        assert _assert_c_accepts_only_what_python_accepts(wire, state) is None
    for offset_ms in (900_001, -900_001):
        assert (
            _assert_c_accepts_only_what_python_accepts(wire, "usable", NOW_MS + offset_ms) is None
        )
    declined = [
        replace(wire, method="DELETE"),
        replace(wire, path=wire.path + b"x"),
        replace(wire, query=wire.query + b"&limit=1"),
        replace(wire, body=b"{}"),
        wire.with_header(b"host", b"evil.example.com"),
        wire.with_header(b"x-sdk-date", b"20250101T000001Z"),
        wire.with_header(b"x-sdk-content-sha256", b"UNSIGNED-PAYLOAD"),
        wire.with_header(b"authorization", None),
        _with_authorization_of(wire, _signed_by_us("GET", "/v1/q/image-server-jobs", [], {}, b"")),
    ]
    for changed in declined:
        assert _assert_c_accepts_only_what_python_accepts(changed, "usable") is None
    # A security token sent with a permanent key's request is not the key's to check: the
    # Python accepts it (unsigned, it is ignored), and so may the C.
    with_token = wire.with_header(b"x-security-token", b"anything")
    assert _authenticated_in_python(with_token, "usable") is PRINCIPAL
    _assert_c_accepts_only_what_python_accepts(with_token, "usable")


def test_authenticate_plain_uses_the_default_window_of_verify() -> None:
    assert compiled is not None
    assert verification.DEFAULT_MAX_SKEW.total_seconds() == compiled.DEFAULT_MAX_SKEW_SECONDS


@pytest.mark.parametrize(
    "now_ms",
    [NOW_MS + 0.0, NOW_MS - 2**63, 2**63, 2**53 + 1, -(2**53) - 1, True, None, "0"],
)
def test_authenticate_plain_declines_a_time_it_cannot_hold_exactly(now_ms: Any) -> None:
    wire = _plain(b"/v1/p/jobs", b"limit=10")
    assert _authenticated_in_c(wire, "usable") is PRINCIPAL
    assert _authenticated_in_c(wire, "usable", now_ms) is None


def _plain_arguments() -> list[Any]:
    wire = _plain(b"/v1/p/jobs", b"limit=10")
    request = wire.received()
    return [
        _plain_keys("usable"),
        request.header_map["authorization"],
        request.method,
        request.raw_path,
        request.raw_query,
        dict(request.header_map),
        b"",
        NOW_MS,
    ]


def test_authenticate_plain_declines_odd_arguments_without_crashing() -> None:
    assert compiled is not None
    good = _plain_arguments()
    assert compiled.authenticate_plain(*good) is PRINCIPAL
    odd_entries: list[Any] = [
        None,
        (),
        [b"", float("inf"), PRINCIPAL],
        (good[0]["AKTEST"][0], float("inf")),
        (good[0]["AKTEST"][0], 10**20, PRINCIPAL),  # an int usable_until: Python's
        (good[0]["AKTEST"][0], float("nan"), PRINCIPAL),
        (b"short", float("inf"), PRINCIPAL),
        (good[0]["AKTEST"][0] + b"x", float("inf"), PRINCIPAL),
        (bytearray(good[0]["AKTEST"][0]), float("inf"), PRINCIPAL),
    ]
    for entry in odd_entries:
        assert compiled.authenticate_plain({"AKTEST": entry}, *good[1:]) is None
    for position in range(1, len(good)):
        for odd in _ODD:
            arguments = list(good)
            arguments[position] = odd
            answer = compiled.authenticate_plain(*arguments)
            # Only a method that spells GET in ASCII may still verify.
            assert answer is None or (position == 2 and str(odd).upper() == "GET"), (position, odd)
    for keys in (None, [], {"AKTEST"}, _DictLike(good[0])):
        with pytest.raises(TypeError):
            compiled.authenticate_plain(keys, *good[1:])
    with pytest.raises(TypeError):
        compiled.authenticate_plain(*good[:7])
    with pytest.raises(TypeError):
        compiled.authenticate_plain(*good, None)


class _DictLike(dict[Any, Any]):
    """A dict subclass may answer lookups otherwise (its __getitem__, __missing__): refused."""


def test_a_key_entry_dropped_during_a_header_lookup_stays_alive_until_the_answer() -> None:
    # The header lookups can run Python code (a hostile key's __eq__); one that empties the
    # key store must not leave the C reading a freed entry, pads or principal.
    assert compiled is not None
    good = _plain_arguments()
    keys = {"AKTEST": (bytes(good[0]["AKTEST"][0]), float("inf"), object())}
    headers = dict(good[5])

    class _Clearing(str):
        def __hash__(self) -> int:
            return hash("host")

        def __eq__(self, other: object) -> bool:
            keys.clear()
            return False

    headers[_Clearing("x-other")] = "v"
    answer = compiled.authenticate_plain(keys, *good[1:5], headers, *good[6:])
    assert keys == {}
    assert answer is None or type(answer) is object
    gc.collect()


def test_authenticate_plain_leaks_no_reference_whatever_it_answers() -> None:
    assert compiled is not None
    good = _plain_arguments()
    entry = good[0]["AKTEST"]
    variants = [good]
    for position, value in [
        (0, {}),  # unknown key
        (0, {"AKTEST": (entry[0], float("-inf"), PRINCIPAL)}),  # disabled
        (0, {"AKTEST": (compiled.hmac_pads(b"SKOTHER"), float("inf"), PRINCIPAL)}),
        (1, good[1].replace("Access=", "Access= ")),  # not the plain form
        (1, good[1][:-1] + ("0" if good[1][-1] != "0" else "1")),  # wrong signature
        (4, b"a=%20"),  # declined late
        (5, {k: v for k, v in good[5].items() if k != "host"}),  # a signed header missing
        (6, b"x"),  # a body
        (7, 2**70),
    ]:
        changed = list(good)
        changed[position] = value
        variants.append(changed)
    tracked = [item for arguments in variants for item in arguments]
    tracked += [*entry, PRINCIPAL]

    def calls() -> None:
        for arguments in variants:
            compiled.authenticate_plain(*arguments)
        with suppress(TypeError):
            compiled.authenticate_plain(None, *good[1:])

    calls()
    gc.collect()
    before = _refcounts(tracked)
    singletons = [None]
    singletons_before = _refcounts(singletons)
    for _ in range(2000):
        calls()
    gc.collect()
    assert _refcounts(tracked) == before
    moved = [a - b for a, b in zip(_refcounts(singletons), singletons_before, strict=True)]
    assert all(abs(change) < 500 for change in moved), moved

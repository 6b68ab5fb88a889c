"""Parameter rules: what a user may send, and the error that names what was wrong."""

from __future__ import annotations

import pytest

from imagejobs.domain import params as p
from imagejobs.domain.errors import InvalidParameter
from imagejobs.domain.ids import MAX_ID


@pytest.mark.parametrize("raw", ["0", "101", "-1", "abc", "1.5", "", " 5", "+5", "1e2", "9" * 30])
def test_limit_rejects_everything_but_1_to_100(raw: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        p.LIMIT.parse(raw)
    assert caught.value.parameter == "limit"
    assert "limit" in caught.value.message


@pytest.mark.parametrize(("raw", "value"), [(None, 10), ("1", 1), ("100", 100), ("007", 7)])
def test_limit_accepts_its_range_and_defaults_to_10(raw: str | None, value: int) -> None:
    assert p.LIMIT.parse(raw) == value


def test_an_id_sized_parameter_takes_any_18_digit_id() -> None:
    # The audit trail pages with before=<event id>: ids have 18 digits (domain/ids.py), and
    # a 10-digit cap on the text refused every such page.
    before = p.IntegerParam("before", 1, MAX_ID, MAX_ID, "Older than this event id.")
    assert before.parse("154489131132252841") == 154489131132252841
    assert before.parse(str(MAX_ID)) == MAX_ID
    for raw in (str(MAX_ID + 1), "9" * 30, "-154489131132252841", "0"):
        with pytest.raises(InvalidParameter):
            before.parse(raw)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [("0", True), ("2147483647", True), ("2147483648", False), ("-1", False), (None, True)],
)
def test_offset_range(raw: str | None, ok: bool) -> None:
    if ok:
        assert p.OFFSET.parse(raw) == int(raw or 0)
    else:
        with pytest.raises(InvalidParameter, match="offset"):
            p.OFFSET.parse(raw)


@pytest.mark.parametrize("raw", [None, "", "createServer", "create_server", "BUILD_IMAGE", "X"])
def test_job_type_is_mandatory_and_exact(raw: str | None) -> None:
    with pytest.raises(InvalidParameter, match="job_type"):
        p.JOB_TYPE.parse(raw)


def test_status_empty_means_no_filter() -> None:
    assert p.JOB_STATUS.parse("") is None
    assert p.JOB_STATUS.parse("RUNNING") == "RUNNING"
    with pytest.raises(InvalidParameter, match="status"):
        p.JOB_STATUS.parse("ROLLBACK")  # a sub-job status, not a job status
    assert p.SUB_JOB_STATUS.parse("ROLLBACK") == "ROLLBACK"


def test_job_type_list_is_comma_separated_and_deduplicated() -> None:
    assert p.JOB_TYPE_LIST.parse("CREATE_SERVER,DELETE_SERVER,CREATE_SERVER") == (
        "CREATE_SERVER",
        "DELETE_SERVER",
    )
    assert p.JOB_TYPE_LIST.parse(None) == ()
    with pytest.raises(InvalidParameter, match="job_type"):
        p.JOB_TYPE_LIST.parse("CREATE_SERVER,NOPE")
    with pytest.raises(InvalidParameter, match="job_type"):
        p.JOB_TYPE_LIST.parse(",".join(["CREATE_SERVER"] * 20))  # over 128 characters


def test_project_id_length() -> None:
    assert p.PROJECT_ID.parse("a" * 128) == "a" * 128
    with pytest.raises(InvalidParameter, match="project_id"):
        p.PROJECT_ID.parse("a" * 129)


def test_query_parsing_reads_what_the_signature_covers() -> None:
    # Split on "&" and the first "=", percent-decoded once as UTF-8, "+" a plus sign: the
    # signature's canonical query (shared/spec/huaweicloud-auth.md §1.4), not a form's.
    from imagejobs.api.endpoint import parse_query

    for raw, expected in (
        (b"", {}),
        (b"a=1&b=2", {"a": "1", "b": "2"}),
        (b"a&b=", {"a": "", "b": ""}),
        (b"&&a=1&", {"a": "1"}),
        (b"job_type=CREATE%5FSERVER", {"job_type": "CREATE_SERVER"}),
        (b"x=a+b&y=a%2Bb&z=a%20b", {"x": "a+b", "y": "a+b", "z": "a b"}),
        (b"k=v=w", {"k": "v=w"}),
        (b"%E4%B8%AD=%E6%96%87", {"中": "文"}),
        ("中=文".encode(), {"中": "文"}),
    ):
        assert parse_query(raw) == expected, raw
    for raw, message in (
        (b"a=1&a=2", "a must not be given more than once"),
        (b"a=1&a=1", "a must not be given more than once"),
        (b"a=%FF", "query must be UTF-8 once percent-decoded"),
        (b"\xff=1", "query must be UTF-8 once percent-decoded"),
    ):
        with pytest.raises(InvalidParameter, match=message):
            parse_query(raw)

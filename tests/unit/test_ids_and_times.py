"""Ids are 18 digits and time-ordered; times are UTC with milliseconds and Z."""

from __future__ import annotations

from imagejobs.domain.ids import IdGenerator, id_for, parse_id, time_of
from imagejobs.domain.times import format_now, format_time, now_ms


def test_ids_are_18_digits_unique_and_increasing() -> None:
    generator = IdGenerator()
    ids = [generator.next_id() for _ in range(10_000)]
    assert all(len(str(i)) == 18 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_more_than_1024_ids_in_one_millisecond_stay_unique_and_ordered() -> None:
    generator = IdGenerator(node=3, clock_ms=lambda: 1_700_000_000_000)
    ids = [generator.next_id() for _ in range(5_000)]
    assert ids == sorted(set(ids))


def test_an_id_remembers_its_time() -> None:
    assert time_of(id_for(1_700_000_000_123, 5, 9)) == 1_700_000_000_123


def test_ids_stay_18_digits_for_a_century() -> None:
    assert len(str(id_for(1_577_836_800_000, 0, 0))) == 18  # 2020
    assert len(str(id_for(4_733_510_400_000, 255, 1023))) == 18  # 2120


def test_parse_id_accepts_only_our_shape() -> None:
    assert parse_id("702364883651395584") == 702364883651395584
    for text in (
        "",
        "1",
        "70236488365139558x",
        "7023648836513955841",
        "-70236488365139558",
        "٧٠٢٣٦٤٨٨٣٦٥١٣٩٥٥٨٤",
    ):
        assert parse_id(text) is None


def test_time_format_matches_the_api_reference() -> None:
    assert format_time(1_646_649_643_858) == "2022-03-07T10:40:43.858Z"
    assert format_time(1_646_649_643_000) == "2022-03-07T10:40:43.000Z"


def test_time_format_agrees_with_the_standard_library_everywhere() -> None:
    import datetime as dt
    import random

    rng = random.Random(1)
    for epoch_ms in [0, 86_399_999, 951_782_400_000, 4_102_444_799_999] + [
        rng.randrange(0, 4_102_444_800_000) for _ in range(2_000)
    ]:
        moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)
        expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
        assert format_time(epoch_ms) == expected


def test_times_stay_right_when_reused_and_past_the_wire_cache() -> None:
    # A page's times come from a bounded cache: reused, and after it is emptied when full.
    first = [format_time(1_700_000_000_000 + 997 * i) for i in range(50_000)]
    again = [format_time(1_700_000_000_000 + 997 * i) for i in range(50_000)]
    assert first == again
    assert again[1] == "2023-11-14T22:13:20.997Z"


def test_the_access_logs_clock_is_format_time_of_now() -> None:
    before = now_ms()
    text = format_now()
    after = now_ms()
    assert text in {format_time(ms) for ms in range(before, after + 1)}

"""Every value a request carries is bounded before it reaches the store (400 with what, where and the limit)."""
from __future__ import annotations

import pytest

from pinstripe_jobs.model.status import Status
from pinstripe_jobs.web import inputs
from pinstripe_jobs.web.inputs import BadRequest, GridQuery, RunsQuery


def test_text_is_bounded_and_free_of_control_characters():
    assert inputs.text({"q": "x" * 200}, "q") == "x" * 200
    assert inputs.text({"q": ""}, "q") is None and inputs.text({}, "q") is None
    with pytest.raises(BadRequest, match="q is 51000 characters long; at most 200 are accepted"):
        inputs.text({"q": "%" * 51_000}, "q")
    with pytest.raises(BadRequest, match="control character"):
        inputs.text({"tenant": "a\x00b"}, "tenant")


@pytest.mark.parametrize("raw", ["0", "501", "-1", "1.5", "²", "١٢", "9" * 30, ""])
def test_limit_is_a_whole_number_from_1_to_500(raw):
    with pytest.raises(BadRequest, match="limit must be a whole number from 1 to 500"):
        inputs.limit({"limit": raw})


def test_limit_defaults_and_accepts_its_range():
    assert inputs.limit({}) == 50 and inputs.limit({"limit": "1"}) == 1 and inputs.limit({"limit": "500"}) == 500


def test_run_ids_beyond_64_bits_are_a_bad_request_and_non_numbers_no_run():
    assert inputs.run_id("42") == 42 and inputs.run_id(str(2 ** 63 - 1)) == 2 ** 63 - 1
    assert inputs.run_id("abc") is None and inputs.run_id("²") is None
    for raw in ("0", str(2 ** 63), "99999999999999999999999"):
        with pytest.raises(BadRequest, match="run id must be a whole number from 1 to 9223372036854775807"):
            inputs.run_id(raw)


def test_statuses_come_from_the_status_vocabulary():
    assert inputs.status({"status": "timed_out"}) == "timed_out"
    with pytest.raises(BadRequest) as caught:
        inputs.status({"status": "bogus"})
    assert all(s.value in str(caught.value) for s in Status)


def test_cursors_must_have_the_shape_their_query_hands_out():
    assert RunsQuery.parse({"cursor": "123"}).cursor == "123"
    assert GridQuery.parse({"cursor": "0|tenant-7"}).cursor == "0|tenant-7"
    for query, raw in ((RunsQuery, "9" * 30), (RunsQuery, "²"), (GridQuery, "zz"), (GridQuery, "9" * 40 + "|x")):
        with pytest.raises(BadRequest, match="was not handed out by this query"):
            query.parse({"cursor": raw})
    with pytest.raises(BadRequest, match="before is 1001 characters long; at most 1000"):
        GridQuery.parse({"before": "x" * 1001})


def test_run_arguments_are_strings_and_numbers():
    assert inputs.run_arguments(["a", 2, 1.5]) == ["a", "2", "1.5"]
    for body, message in (("notalist", "args must be a list of strings and numbers, not str"),
                          ([1, {"a": 2}], r"args\[1\] must be a string or a number, not an object"),
                          ([True], r"args\[0\] must be a string or a number, not a boolean"),
                          ([None], r"args\[0\] must be a string or a number, not null"),
                          (["a\x00"], r"args\[0\] contains a NUL character"),
                          (["x"] * 101, "args has 101 items; at most 100"),
                          (["x" * 5000], r"args\[0\] is 5000 characters long; at most 4096")):
        with pytest.raises(BadRequest, match=message):
            inputs.run_arguments(body)


def test_a_run_body_is_an_object_with_known_fields():
    assert inputs.run_body({}) == ([], False)
    assert inputs.run_body({"args": ["a"], "only_failed": True}) == (["a"], True)
    with pytest.raises(BadRequest, match="must be a JSON object"):
        inputs.run_body([1])
    with pytest.raises(BadRequest, match="unknown field 'onlyFailed' \\(the body takes args and only_failed\\)"):
        inputs.run_body({"onlyFailed": True})
    with pytest.raises(BadRequest, match="only_failed must be true or false, not str"):
        inputs.run_body({"only_failed": "false"})

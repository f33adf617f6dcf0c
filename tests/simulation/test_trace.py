"""Reading and writing traces: the shared traces load, every malformed line is reported as
``FILE:LINE: what — fix`` with the right line number, and a written trace reads back equal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runnerscale.simulation.trace import (
    KEYS,
    MAX_PROBLEMS,
    TraceError,
    TraceJob,
    parse_trace,
    read_trace,
    write_trace,
)

TRACES = Path(__file__).parents[2].parent / "shared" / "traces"

GOOD = (
    '{"at": 1.5, "repo": "acme/app", "labels": ["self-hosted", "linux", "x64"], '
    '"duration": 60, "run_id": 7, "job": "build"}'
)


def problems_of(text: str, source: str = "t.jsonl") -> list[str]:
    with pytest.raises(TraceError) as caught:
        parse_trace(text, source)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


@pytest.mark.parametrize(
    ("name", "count"), [("workday", 366), ("matrix-bursts", 380), ("nightly", 220)]
)
def test_shared_traces_load(name: str, count: int) -> None:
    jobs = read_trace(TRACES / f"{name}.jsonl")
    assert len(jobs) == count
    assert [job.at for job in jobs] == sorted(job.at for job in jobs)
    assert all(job.labels and job.duration >= 0 and "/" in job.repo for job in jobs)
    assert all(job.run_id is not None and job.job for job in jobs)


def test_a_line_reads_into_a_job() -> None:
    (job,) = parse_trace(GOOD)
    assert job == TraceJob(
        at=1.5,
        repo="acme/app",
        labels=("self-hosted", "linux", "x64"),
        duration=60.0,
        run_id=7,
        job="build",
    )
    assert job.line == 1


def test_optional_keys_may_be_left_out_or_null() -> None:
    text = (
        '{"at": 0, "repo": "a/b", "labels": ["x"], "duration": 1}\n'
        '{"at": 0, "repo": "a/b", "labels": ["x"], "duration": 1, "run_id": null, "job": null}\n'
    )
    jobs = parse_trace(text)
    assert [(job.run_id, job.job) for job in jobs] == [(None, None), (None, None)]


def test_blank_lines_and_comments_are_skipped_and_lines_still_counted() -> None:
    text = f"# exported from acme/app\n\n   \n{GOOD}\n# end\n"
    (job,) = parse_trace(text)
    assert job.line == 4
    # ... and an error further down names its real line.
    problems = problems_of(text + "{oops\n")
    assert problems[0].startswith("t.jsonl:6: ")


def test_jobs_are_sorted_by_at_and_ties_keep_file_order() -> None:
    lines = [
        '{"at": 5, "repo": "a/b", "labels": ["x"], "duration": 1, "job": "late"}',
        '{"at": 1, "repo": "a/b", "labels": ["x"], "duration": 1, "job": "first"}',
        '{"at": 1, "repo": "a/b", "labels": ["x"], "duration": 1, "job": "second"}',
    ]
    jobs = parse_trace("\n".join(lines))
    assert [job.job for job in jobs] == ["first", "second", "late"]
    assert [job.line for job in jobs] == [2, 3, 1]


def test_windows_line_endings_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (GOOD + "\r\n" + GOOD + "\r\n").encode())
    assert len(read_trace(path)) == 2


LINE_2_CASES = [
    pytest.param(
        "{not json}", "is not valid JSON", "write one JSON object per line", id="bad-json"
    ),
    pytest.param("[1, 2]", "is a list, not a JSON object", "one object per line", id="array"),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": ["x"]}',
        "'duration' is missing",
        '"duration": 240',
        id="missing-key",
    ),
    pytest.param(
        '{"at": "12", "repo": "a/b", "labels": ["x"], "duration": 1}',
        """'at' is "12" (a string), not a number""",
        '"at": 12.5',
        id="wrong-type",
    ),
    pytest.param(
        '{"at": true, "repo": "a/b", "labels": ["x"], "duration": 1}',
        "'at' is true (a boolean), not a number",
        '"at": 12.5',
        id="boolean-is-not-a-number",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": ["x"], "duration": -3}',
        "'duration' is -3, which is negative",
        "at least 0",
        id="negative-duration",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": ["x"], "duration": NaN}',
        "is not valid JSON (NaN is not a number JSON allows",
        "write one JSON object per line",
        id="nan",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": ["x"], "duration": 1, "duraton": 2}',
        "unknown key 'duraton'",
        "did you mean 'duration'?",
        id="unknown-key-close",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": ["x"], "duration": 1, "priority": 2}',
        "unknown key 'priority'",
        "remove it (a trace line has at, repo, labels, duration, run_id, job)",
        id="unknown-key",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": [], "duration": 1}',
        "'labels' is empty",
        'e.g. "labels": ["self-hosted", "linux", "x64"]',
        id="empty-labels",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": ["x", " "], "duration": 1}',
        "'labels'[1] is an empty string",
        "remove it or name the label",
        id="empty-label",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": "x64", "duration": 1}',
        """'labels' is "x64" (a string), not a list""",
        '"labels": [',
        id="labels-not-a-list",
    ),
    pytest.param(
        '{"at": 1, "repo": "acme", "labels": ["x"], "duration": 1}',
        "'repo' is 'acme', not \"owner/name\"",
        '"repo": "acme/app"',
        id="bad-repo",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b/c", "labels": ["x"], "duration": 1}',
        "'repo' is 'a/b/c'",
        '"owner/name"',
        id="repo-with-two-slashes",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": ["x"], "duration": 1, "run_id": 0}',
        "'run_id' is 0, less than 1",
        '"run_id": 1001',
        id="run-id-zero",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": ["x"], "duration": 1, "run_id": "7"}',
        "'run_id' is \"7\" (a string), not a whole number",
        "or leave it out",
        id="run-id-string",
    ),
    pytest.param(
        '{"at": 1, "repo": "a/b", "labels": ["x"], "duration": 1, "job": 3}',
        "'job' is 3 (a number), not a string",
        '"job": "build"',
        id="job-not-a-string",
    ),
]


@pytest.mark.parametrize(("line", "what", "hint"), LINE_2_CASES)
def test_a_malformed_line_names_file_line_problem_and_fix(
    tmp_path: Path, line: str, what: str, hint: str
) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(f"{GOOD}\n{line}\n{GOOD}\n")
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}:2: {what}"), problem
    assert " — " in problem
    assert hint in problem.split(" — ", 1)[1], problem


def test_every_problem_of_a_line_is_reported() -> None:
    problems = problems_of('{"at": -1, "repo": "x", "labels": []}')
    assert problems == [
        "t.jsonl:1: 'duration' is missing — write the seconds the job runs once picked up, "
        'e.g. "duration": 240',
        "t.jsonl:1: 'at' is -1, which is negative — write the seconds from the trace start at "
        'which the job is queued, e.g. "at": 12.5 (at least 0)',
        "t.jsonl:1: 'repo' is 'x', not \"owner/name\" — write the repository as \"owner/name\", "
        'e.g. "repo": "acme/app"',
        "t.jsonl:1: 'labels' is empty — list the job's runs-on labels, e.g. "
        '"labels": ["self-hosted", "linux", "x64"]',
    ]


def test_problems_from_several_lines_each_name_their_line() -> None:
    text = "\n".join([GOOD, "{", GOOD, '{"at": 1}', GOOD])
    problems = problems_of(text)
    assert [problem.split(": ", 1)[0] for problem in problems] == [
        "t.jsonl:2",
        "t.jsonl:4",
        "t.jsonl:4",
        "t.jsonl:4",
    ]


def test_problem_collection_stops_after_the_limit() -> None:
    problems = problems_of("nope\n" * 100)
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[MAX_PROBLEMS - 1].startswith(f"t.jsonl:{MAX_PROBLEMS}: ")
    assert problems[-1] == (
        f"t.jsonl: stopped after {MAX_PROBLEMS} problems — fix these and read it again"
    )


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_a_trace_without_jobs_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    with pytest.raises(TraceError, match=r"empty\.jsonl: the trace has no jobs — write one"):
        read_trace(path)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    assert caught.value.problems == [
        f"{path}: no such file — check the path of the trace (--trace)"
    ]


def test_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"is a directory — give the path of a \.jsonl file"):
        read_trace(tmp_path)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + '{"job": "café"}'.encode("latin-1") + b"\n")
    with pytest.raises(TraceError, match=r"latin1\.jsonl:2: is not UTF-8 text"):
        read_trace(path)


def test_trace_error_is_a_value_error() -> None:
    assert issubclass(TraceError, ValueError)


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    jobs = [
        TraceJob(0.0, "acme/app", ("self-hosted", "linux", "x64"), 61.25, 1001, "build"),
        TraceJob(3.5, "acme/app", ("self-hosted", "GPU"), 600.0, 1001, "test (3.11, ü)"),
        TraceJob(3.5, "acme/site", ("self-hosted",), 0.0),
        TraceJob(86_400.75, "acme/site", ("self-hosted", "linux", "arm64"), 12.0, None, "x"),
    ]
    path = tmp_path / "out.jsonl"
    write_trace(jobs, path)
    assert read_trace(path) == jobs
    # ... and writing what was read gives the same bytes.
    again = tmp_path / "again.jsonl"
    write_trace(read_trace(path), again)
    assert again.read_bytes() == path.read_bytes()


def test_written_lines_follow_the_documented_key_order_and_rounding(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_trace(
        [
            TraceJob(1.23456, "acme/app", ("x",), 9.999, 5, "j"),
            TraceJob(2.0, "acme/app", ("x",), 1.0),
        ],
        path,
    )
    first, second = path.read_text().splitlines()
    assert list(json.loads(first)) == list(KEYS)
    assert json.loads(first) == {
        "at": 1.23,
        "repo": "acme/app",
        "labels": ["x"],
        "duration": 10.0,
        "run_id": 5,
        "job": "j",
    }
    assert list(json.loads(second)) == ["at", "repo", "labels", "duration"]


def test_the_shared_traces_round_trip(tmp_path: Path) -> None:
    for name in ("workday", "matrix-bursts", "nightly"):
        jobs = read_trace(TRACES / f"{name}.jsonl")
        path = tmp_path / f"{name}.jsonl"
        write_trace(jobs, path)
        assert read_trace(path) == jobs

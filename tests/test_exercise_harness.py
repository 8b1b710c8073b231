"""The exercise harness: reader files match the solutions, and every untouched stub reports 'not yet'."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from book.exercises import (REPO_ROOT, SOLUTIONS, TREE_VARIABLE, ExerciseNotDone, chapters, exercise_ids,
                                generate, make_stub)

HEADER = "from book.exercises import ExerciseNotDone  # noqa: F401\n"


def test_reader_files_are_generated_from_the_solutions():
    assert chapters(), "no exercise solutions found"
    assert generate(check=True) == 0, ("a reader file under exercises/ differs from what the solutions generate: "
                                       "run `python -m book.exercises` (if you are a learner who edited it, "
                                       "that is expected: use `make check CH=NN` instead)")


def test_stub_replaces_the_block_and_names_the_function():
    source = HEADER + ("def area(w, h):\n    # BEGIN SOLUTION 99.1 (one line; see section 1)\n"
                       "    return w * h\n    # END SOLUTION\n")
    stub = make_stub(source, "99_demo")
    assert "return w * h" not in stub
    namespace = {}
    exec(stub, namespace)
    with pytest.raises(ExerciseNotDone) as raised:
        namespace["area"](2, 3)
    assert (raised.value.exercise_id, raised.value.function, raised.value.hint) == ("99.1", "area", "one line; see section 1")
    assert isinstance(raised.value, NotImplementedError)


@pytest.mark.parametrize("broken, complaint", [
    ("def f():\n    # BEGIN SOLUTION 99.1 (hint)\n    return 1\n", "no END SOLUTION"),
    ("def f():\n    # BEGIN SOLUTION 99.1\n    return 1\n    # END SOLUTION\n", "malformed marker"),
    ("# BEGIN SOLUTION 99.1 (hint)\nx = 1\n# END SOLUTION\n", "outside a function"),
])
def test_malformed_markers_are_rejected(broken, complaint):
    with pytest.raises(ValueError, match=complaint):
        make_stub(HEADER + broken, "99_demo")


def test_untouched_stubs_all_report_not_yet(tmp_path):
    """Run every chapter's self-checks on the reader's files: each test must FAIL with ExerciseNotDone
    (never pass, never skip), and every exercise in the solutions must have at least one test."""
    report = tmp_path / "report.xml"
    env = {**os.environ, TREE_VARIABLE: "reader"}
    subprocess.run([sys.executable, "-m", "pytest", "exercises", "--exercises=reader", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    cases = ET.parse(report).getroot().iter("testcase")
    seen, problems = set(), []
    for case in cases:
        name = f"{case.get('classname')}::{case.get('name')}"
        failure = case.find("failure")
        if failure is None:
            problems.append(f"{name} did not fail on the untouched stub")
            continue
        text = (failure.get("message") or "") + (failure.text or "")
        if "ExerciseNotDone" not in text:
            problems.append(f"{name} failed without ExerciseNotDone: {failure.get('message')}")
        seen.update(i for c in chapters() for i in exercise_ids((SOLUTIONS / f"{c}.py").read_text())
                    if f"exercise {i} (" in text)
    assert not problems, "\n".join(problems)
    expected = {i for c in chapters() for i in exercise_ids((SOLUTIONS / f"{c}.py").read_text())}
    assert expected - seen == set(), f"exercises without a self-check test: {sorted(expected - seen)}"

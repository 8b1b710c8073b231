"""Ends an exercise run with a verdict per exercise: done, not yet, or wrong.

An exercise is "done" only when every one of its tests ran and passed. A test that hits
`ExerciseNotDone` counts as "not yet" (it fails; it is never skipped or passed).
"""
from collections import defaultdict

import pytest

_exercise_of = {}
_outcomes = defaultdict(list)


def pytest_collection_modifyitems(items):
    for item in items:
        marker = item.get_closest_marker("exercise")
        if marker:
            _exercise_of[item.nodeid] = marker.args[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """An unfinished exercise fails with one line, not a traceback through the test."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and call.excinfo.typename == "ExerciseNotDone":
        report.longrepr = f"ExerciseNotDone: {call.excinfo.value}"


def pytest_runtest_logreport(report):
    exercise = _exercise_of.get(report.nodeid)
    if exercise is None or (report.when != "call" and report.passed):
        return
    if report.failed and "ExerciseNotDone" in report.longreprtext:
        message = report.longreprtext.split("ExerciseNotDone: ")[-1].splitlines()[0]
        _outcomes[exercise].append(("not yet", message))
    elif report.failed:
        _outcomes[exercise].append(("wrong", report.nodeid.split("::")[-1]))
    elif report.skipped:
        _outcomes[exercise].append(("wrong", f"{report.nodeid.split('::')[-1]} was skipped"))
    else:
        _outcomes[exercise].append(("done", ""))


def pytest_terminal_summary(terminalreporter):
    if not _outcomes:
        return
    from book.exercises import tree_under_test

    write = terminalreporter.write_line
    terminalreporter.section(f"exercises ({tree_under_test()} tree)")
    counts = defaultdict(int)
    for exercise in sorted(_outcomes, key=lambda e: [int(p) for p in e.split(".") if p.isdigit()]):
        results = _outcomes[exercise]
        if all(status == "done" for status, _ in results):
            verdict, detail = "done", f"{len(results)} checks pass"
        elif any(status == "not yet" for status, _ in results):
            verdict, detail = "not yet", next(msg for status, msg in results if status == "not yet")
        else:
            failing = [msg for status, msg in results if status == "wrong"]
            verdict, detail = "wrong", f"{len(failing)} of {len(results)} checks fail: {', '.join(failing)}"
        counts[verdict] += 1
        write(f"  {exercise:<7} {verdict:<8} {detail}")
    write(f"  {counts['done']} done, {counts['not yet']} not yet, {counts['wrong']} wrong")

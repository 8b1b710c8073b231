"""The exercise harness: the reader's files are generated from the solutions, so they cannot drift.

A solution in `exercises/solutions/NN_slug.py` imports ExerciseNotDone (the reader's copy raises it)
and marks the part the reader writes:

    def topological_sort(root):
        \"\"\"Exercise 00.1: ...\"\"\"
        # BEGIN SOLUTION 00.1 (about 6 lines; see section 2)
        ...
        # END SOLUTION

`python -m book.exercises` writes `exercises/NN_slug/exercises.py` with each marked block replaced by

        raise ExerciseNotDone("00.1", "topological_sort", "about 6 lines; see section 2")

and `--check` fails if a committed reader file differs from what the solutions generate.
The self-check tests load one tree or the other with `load_exercises("NN_slug")`: the reader's files by
default (`make check`), the solutions under `pytest --exercises=solutions` (`make test`).
"""
import argparse
import importlib.util
import os
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EXERCISES = REPO_ROOT / "exercises"
SOLUTIONS = EXERCISES / "solutions"
TREE_VARIABLE = "MINIGRAD_EXERCISES"  # "reader" or "solutions"

_BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION (?P<id>\S+) \((?P<hint>[^)]*)\)\s*$")
_END = re.compile(r"^\s*# END SOLUTION\s*$")
_DEF = re.compile(r"^(?P<indent>\s*)def (?P<name>\w+)\(")

HEADER = ("# Your exercises for chapter {chapter}: replace each `raise ExerciseNotDone(...)` with your code,\n"
          "# then run `make check CH={number}`. Generated from exercises/solutions/{chapter}.py by\n"
          "# `python -m book.exercises`; this copy is yours to edit.\n")


class ExerciseNotDone(NotImplementedError):
    """Raised by an exercise the reader has not written yet."""

    def __init__(self, exercise_id, function, hint):
        self.exercise_id, self.function, self.hint = exercise_id, function, hint
        super().__init__(f"exercise {exercise_id} ({function}) is not done yet: {hint}")


def make_stub(solution_source: str, chapter: str) -> str:
    """The reader's file: the solution with every marked block replaced by `raise ExerciseNotDone`."""
    lines = solution_source.splitlines()
    out, function, inside = [], None, None
    for number, line in enumerate(lines, 1):
        if inside is None:
            found_def = _DEF.match(line)
            if found_def:
                function = found_def["name"]
            begin = _BEGIN.match(line)
            if begin:
                if function is None:
                    raise ValueError(f"{chapter}: line {number}: BEGIN SOLUTION outside a function")
                inside = begin
                out.append(f'{begin["indent"]}raise ExerciseNotDone("{begin["id"]}", "{function}", "{begin["hint"]}")')
            elif "SOLUTION" in line and line.strip().startswith("#"):
                raise ValueError(f"{chapter}: line {number}: malformed marker {line.strip()!r}; expected "
                                 f"'# BEGIN SOLUTION <id> (<hint>)' or '# END SOLUTION'")
            else:
                out.append(line)
        elif _END.match(line):
            inside = None
        elif _BEGIN.match(line):
            raise ValueError(f"{chapter}: line {number}: BEGIN SOLUTION inside another solution block")
    if inside is not None:
        raise ValueError(f"{chapter}: exercise {inside['id']} has no END SOLUTION")
    body = "\n".join(out) + "\n"
    if "from book.exercises import ExerciseNotDone" not in body:
        raise ValueError(f"{chapter}: the solution file must import ExerciseNotDone (the reader's file raises it)")
    number = chapter.split("_")[0]
    return HEADER.format(chapter=chapter, number=number) + body


def exercise_ids(solution_source: str):
    return [m["id"] for m in map(_BEGIN.match, solution_source.splitlines()) if m]


def chapters():
    return sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.py"))


def reader_path(chapter: str) -> Path:
    return EXERCISES / chapter / "exercises.py"


def generate(check: bool) -> int:
    """Write (or, with check, compare) every reader file. Returns the number of stale files."""
    stale = 0
    for chapter in chapters():
        expected = make_stub((SOLUTIONS / f"{chapter}.py").read_text(), chapter)
        target = reader_path(chapter)
        if target.exists() and target.read_text() == expected:
            continue
        stale += 1
        if check:
            print(f"{target.relative_to(REPO_ROOT)} differs from what exercises/solutions/{chapter}.py generates; "
                  f"run `python -m book.exercises`")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(expected)
            print(f"wrote {target.relative_to(REPO_ROOT)}")
    return stale


def tree_under_test() -> str:
    tree = os.environ.get(TREE_VARIABLE, "reader")
    if tree not in ("reader", "solutions"):
        raise ValueError(f"{TREE_VARIABLE} must be 'reader' or 'solutions', got {tree!r}")
    return tree


def load_exercises(chapter: str):
    """Import the chapter's exercises from the tree under test (reader's files or solutions)."""
    tree = tree_under_test()
    path = reader_path(chapter) if tree == "reader" else SOLUTIONS / f"{chapter}.py"
    name = f"exercises_{chapter}_{tree}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate the reader's exercise files from the solutions.")
    parser.add_argument("--check", action="store_true", help="fail if a reader file is out of date; write nothing")
    args = parser.parse_args(argv)
    stale = generate(args.check)
    if args.check:
        print("exercise files are in sync with the solutions" if not stale else f"{stale} file(s) out of date")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())


# ---- helpers of the self-checks ------------------------------------------------------------------

SELF_CHECK_TOLERANCE = dict(rtol=1e-7, atol=1e-10)  # float64 answers against float64 references


def assert_matches(name, got, want, **tol):
    """got (the exercise's answer) against want (the reference: an array or a torch tensor), with the shape checked
    first and a readable message; float64 tolerances unless given."""
    from minigrad.backend import np
    got = np.asarray(got)
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, the reference's is {want.shape}"
    np.testing.assert_allclose(got, want, err_msg=f"{name} differs from the reference",
                               **(tol or SELF_CHECK_TOLERANCE))


def no_numpy_warnings(fn, *args, **kwargs):
    """Call fn with NumPy's RuntimeWarnings (invalid value, divide by zero, overflow) turned into errors."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return fn(*args, **kwargs)

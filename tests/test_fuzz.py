"""The grammar-aware fuzzer (scripts/fuzz.py), bounded: every generated program
ends in an object or a located CompileError, and the crashes it found stay fixed.
The long run is `python3 scripts/fuzz.py --count 100000` (docs/errors.md)."""
import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytrace.compiler import CompileOptions, compile_source
from pytrace.language.diagnostics import CompileError, render

_spec = importlib.util.spec_from_file_location(
    "pytrace_fuzz", Path(__file__).resolve().parent.parent / "scripts" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


@pytest.fixture(scope="module")
def worker():
    w = fuzz.Worker(timeout=30.0)
    yield w
    w.close()


@st.composite
def programs(draw):
    return fuzz.generate(fuzz.HypothesisChooser(draw))


@settings(derandomize=True, max_examples=150, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(programs())
def test_generated_programs_compile_or_fail_located(worker, program):
    source, params = program
    status, detail = worker.check(source, params)
    assert status != "crash", f"{detail[0]}\n{source!r} {params}\n{detail[1]}"


def test_worker_reports_a_dead_worker_as_a_crash():
    w = fuzz.Worker(timeout=30.0)
    try:
        w.submit("BEGIN {}")
        w.proc.kill()
        status, detail = w.result()
        assert status == "crash" and detail[0].startswith("worker died")
        assert w.check("BEGIN { exit(); }") == ("compiled", None)    # a fresh worker
    finally:
        w.close()


def test_located_property():
    src = "BEGIN { @x = ; }"
    with pytest.raises(CompileError) as e:
        compile_source(src, "stdin", CompileOptions())
    assert fuzz.located(e.value.diagnostics[0], src)
    assert fuzz.check_program(src) == ("rejected", None)


# ------------------------------------------------------------------ crashes the fuzzer found

def _located_error(src, params=()):
    status, detail = fuzz.check_program(src, params)
    assert status == "rejected", detail
    with pytest.raises(CompileError) as e:
        compile_source(src, "stdin", CompileOptions(params=list(params)))
    return e.value.diagnostics[0], render(e.value.diagnostics[0], src, "stdin").splitlines()[0]


@pytest.mark.parametrize("src,message", [
    # 0.17 prints these without a location; the diagnostic still has the call's span
    ('BEGIN { kaddr("no_such_symbol_fz"); }', "ERROR: Failed to compile: Failed to resolve kernel symbol: no_such_symbol_fz"),
    ('BEGIN { kaddr(""); }', "ERROR: Failed to compile: Failed to resolve kernel symbol: "),
    ('BEGIN { cgroupid("/nonexistent/fz"); }',
     'ERROR: Failed to compile: Failed to get `cgroupid` for path: "/nonexistent/fz": No such file or directory'),
    ('BEGIN { cgroupid(""); }', 'ERROR: Failed to compile: Failed to get `cgroupid` for path: "": No such file or directory'),
    # a NUL in the path was a ValueError from os.stat
    ('BEGIN { cgroupid("/sys\\0b"); }', 'ERROR: Failed to compile: Failed to get `cgroupid` for path: "/sys": Invalid argument'),
])
def test_errors_0_17_prints_unlocated_have_a_span(src, message):
    diag, line = _located_error(src)
    assert line == message
    assert diag.span is not None and diag.span.col == src.index(src.split("{ ")[1][:5]) + 1


@pytest.mark.parametrize("src,message", [
    # printf_kind(None): an AttributeError for a call argument with no type
    ("BEGIN { ustack(@a[1], 0) }", "ERROR: Undefined map: @a"),
    # a literal that is not UTF-8 was a UnicodeEncodeError / UnicodeDecodeError
    ('BEGIN { kaddr("\\xff"); }', "ERROR: Failed to compile: Failed to resolve kernel symbol: "),
])
def test_fuzz_crashes_are_located_errors(src, message):
    diag, line = _located_error(src)
    assert message in line


def test_time_with_a_non_utf8_format_compiles():
    assert fuzz.check_program('BEGIN { time("\\xff"); exit(); }') == ("compiled", None)


def test_join_with_a_non_utf8_delimiter_compiles():
    # was a UnicodeDecodeError in join()'s action
    assert fuzz.check_program('interval:s:1 { join((int64)1, "\\xff"); }') == ("compiled", None)

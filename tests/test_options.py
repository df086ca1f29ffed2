"""The command line as getopt_long reads it (trace/options.py)."""
import pytest

from pytrace import options
from pytrace.options import UsageError


def test_defaults():
    a = options.parse([])
    assert (a.program, a.format, a.helper_errors, a.quiet, a.include_dirs, a.includes, a.rest) == \
        (None, "text", 0, False, [], [], [])


def test_options_and_operands_in_any_order():
    a = options.parse(["script.bt", "-v", "1", "-q", "two"])
    assert (a.rest, a.verbose, a.quiet) == (["script.bt", "1", "two"], True, True)


def test_short_options_cluster_and_take_attached_values():
    a = options.parse(["-kk", "-lv", "-ke", "BEGIN { }", "-ptext", "-B", "line"])
    assert (a.helper_errors, a.list, a.verbose, a.program, a.pid, a.buffering) == \
        (3, True, True, "BEGIN { }", "text", "line")


def test_a_value_may_look_like_an_option():
    assert options.parse(["-e", "-v"]).program == "-v"
    assert options.parse(["--emit-elf", "--help"]).emit_elf == "--help"


def test_long_options_by_unique_prefix_and_with_equals():
    a = options.parse(["--emit-e", "o.elf", "--dump-after=typecheck", "--uns", "--usdt", "--vers"])
    assert (a.emit_elf, a.dump_after, a.unsafe, a.usdt_file_activation, a.version) == \
        ("o.elf", "typecheck", True, True, True)
    assert options.parse(["--include", "a.h", "--include=b.h", "-I", "d1", "-Id2"]).includes == ["a.h", "b.h"]
    assert options.parse(["-I", "d1", "-Id2"]).include_dirs == ["d1", "d2"]


def test_an_exact_long_name_beats_a_longer_one():
    assert options.parse(["--include", "x.h"]).includes == ["x.h"]
    assert options.parse(["--info"]).info is True


def test_double_dash_ends_the_options_and_dash_is_an_operand():
    a = options.parse(["-", "--", "-5", "--help"])
    assert (a.rest, a.help) == (["-", "-5", "--help"], False)


@pytest.mark.parametrize("argv, message", [
    (["-x"], "invalid option -- 'x'"),
    (["-5"], "invalid option -- '5'"),
    (["-qx"], "invalid option -- 'x'"),
    (["-e"], "option requires an argument -- 'e'"),
    (["--bogus=3"], "unrecognized option '--bogus=3'"),
    (["--emit", "x"], "option '--emit' is ambiguous; possibilities: '--emit-elf' '--emit-llvm'"),
    (["--in"], "option '--in' is ambiguous; possibilities: '--include' '--info'"),
    (["--help=1"], "option '--help' doesn't allow an argument"),
    (["--metrics"], "option '--metrics' requires an argument"),
])
def test_errors_are_getopts(argv, message):
    with pytest.raises(UsageError) as e:
        options.parse(argv)
    assert str(e.value) == message

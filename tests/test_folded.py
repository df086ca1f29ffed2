"""-f folded (issue 11, part 2): maps keyed by a stack print as folded stacks, one line per
stack, root-first frames joined with ';', a space and the count, checked against the rule
flamegraph.pl parses its input with (and, when flamegraph.pl is on PATH, by flamegraph.pl
itself); every other map and value prints as -f text prints it.  End to end on the real
kernel: profile samples of a CPU-busy program, syscall kernel stacks, print() while the
trace runs, mixed maps."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import build_c

from pytrace.cli import FORMATS
from pytrace.runtime.output import OUTPUTS
from pytrace.runtime.output.folded import EMPTY_FRAME, frame_text, line_text
from pytrace.runtime.output.values import Stack

PYTRACE = [sys.executable, "-m", "pytrace.cli"]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loads BPF programs: needs root")

# flamegraph.pl, "parse input": each line, chomped, must match this; the stack is then
# split on ';' (and a stack that itself ends in whitespace and a number would be read as a
# differential flame graph's two counts)
FLAMEGRAPH_LINE = re.compile(r"^(.*)\s+?(\d+(?:\.\d*)?)$")

# main -> spin_outer -> spin_middle -> spin_leaf, with frame pointers. `busy SECONDS`
# spins; `busy name COMM N MS` renames itself, calls getppid N times, then sleeps MS ms.
BUSY = r"""
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
static volatile unsigned long sink;
__attribute__((noinline)) void spin_leaf(long n) { for (long i = 0; i < n; i++) sink += i; }
__attribute__((noinline)) void spin_middle(long n) { spin_leaf(n); __asm__ volatile(""); }
__attribute__((noinline)) void spin_outer(long n) { spin_middle(n); __asm__ volatile(""); }
int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "name") == 0) {
        prctl(PR_SET_NAME, argv[2]);
        for (long k = atol(argv[3]); k > 0; k--)
            syscall(SYS_getppid);
        usleep(atol(argv[4]) * 1000);
        return 0;
    }
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        spin_outer(100000);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
    return 0;
}
"""


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    d = tmp_path_factory.mktemp("folded")
    return build_c(d, "busy", BUSY, "-O0", "-fno-omit-frame-pointer")


def run(args, timeout=60):
    r = subprocess.run(PYTRACE + args, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


def folded_lines(text):
    """Every line as flamegraph.pl reads it: (frames, count); each must parse, have no
    empty frame, and not read as a differential line."""
    out = []
    for line in text.splitlines():
        m = FLAMEGRAPH_LINE.match(line.strip())
        assert m, f"not a folded line: {line!r}"
        stack, count = m.groups()
        assert not FLAMEGRAPH_LINE.match(stack), f"reads as two counts: {line!r}"
        frames = stack.split(";")
        assert all(frames), f"empty frame: {line!r}"
        out.append((frames, int(count)))
    return out


def split_exit(out):
    """(what was printed while tracing, the exit dump) around the "\\n\\n" (-q runs)."""
    before, sep, after = out.partition("\n\n")
    assert sep, out
    return before, after


def in_order(frames, names):
    """The frames named, each present, root-first in the order given."""
    where = [next((i for i, f in enumerate(frames) if f == n), None) for n in names]
    return None not in where and where == sorted(where)


# --------------------------------------------------------------------------- end to end

@needs_root
def test_profile_user_stacks_are_root_first_after_comm(busy):
    """The issue's one-liner, with the trace ended by exit() while the program still runs
    so that its user symbols resolve."""
    out = run(["-q", "-f", "folded", "-e", "profile:hz:99 /pid == cpid/ "
               "{ @[ustack, comm] = count(); } interval:ms:1500 { exit(); }",
               "-c", f"{busy} 10"])
    lines = folded_lines(split_exit(out)[1].strip("\n"))
    assert all(frames[0] == "busy" for frames, _ in lines), lines
    deep = [(f, c) for f, c in lines if "spin_leaf" in f]
    assert deep and all(in_order(f, ["busy", "main", "spin_outer", "spin_middle", "spin_leaf"])
                        for f, _ in deep), deep
    assert sum(c for _, c in deep) > 30, lines   # ~148 samples at 99 Hz in 1.5 s on a free CPU
    assert not any("+" in frame for f, _ in lines for frame in f), lines   # no offsets
    counts = [c for _, c in lines]
    assert counts == sorted(counts)                   # ascending, as text mode


@needs_root
def test_issue_command_output_is_flamegraph_input(busy, tmp_path):
    """`-f folded -e 'profile:hz:99 { @[ustack, comm] = count(); }' -c CMD` verbatim: every
    process sampled, every line parses (unresolved frames are 0x addresses); flamegraph.pl
    renders it when it is on PATH."""
    out = run(["-f", "folded", "-e", "profile:hz:99 { @[ustack, comm] = count(); }",
               "-c", f"{busy} 1"])
    head, dump = split_exit(out)
    assert head == "Attaching 1 probe..."
    lines = folded_lines(dump.strip("\n"))
    assert sum(c for f, c in lines if f[0] == "busy") > 20, lines   # ~99 on a free CPU
    assert all(re.fullmatch(r"0x[0-9a-f]+|[^ ]+", fr) for f, _ in lines for fr in f[1:])
    if shutil.which("flamegraph.pl"):
        folded = tmp_path / "out.folded"
        folded.write_text(dump)
        svg = subprocess.run(["flamegraph.pl", str(folded)], capture_output=True, text=True,
                             check=True).stdout
        assert "<svg" in svg and ">busy (" in svg


@needs_root
def test_kernel_stack_of_a_syscall_is_root_first(workload):
    out = run(["-q", "-f", "folded", "-e", "tracepoint:syscalls:sys_enter_getppid /pid == cpid/ "
               "{ @[kstack] = count(); }", "-c", f"{workload} getppid 5"])
    [(frames, count)] = folded_lines(split_exit(out)[1].strip("\n"))
    assert count == 5
    assert frames[0].startswith("entry_SYSCALL_64"), frames
    assert in_order(frames, ["do_syscall_64", "syscall_trace_enter"]), frames
    assert all(re.fullmatch(r"[\w.$]+", f) for f in frames), frames    # no +offset, no _[k]


MIXED = ("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { "
         "@k[comm, kstack, ustack] = count(); @n[comm] = count(); @s = sum(2); "
         "@h[kstack] = hist(3); @c++; if (@c == 2) { print(@k); printf(\"mid\\n\"); } } "
         "END { print(@n); print(@s, 0, 2); }")


@needs_root
def test_mixed_maps_and_print_while_tracing(workload):
    """print(@k) of a stack map while tracing prints folded lines; a kernel stack after a
    user stack is marked _[k]; every other map and value prints exactly as -f text."""
    cmd = f"{workload} getppid 5 sleep 300"
    folded = run(["-q", "-f", "folded", "-e", MIXED, "-c", cmd])
    text = run(["-q", "-e", MIXED, "-c", cmd])
    during, dump = split_exit(folded)
    [(mid, n), end] = [folded_lines(line)[0] for line in folded.splitlines()
                       if line.startswith("workload;")]
    assert 1 <= n <= 5 and end[1] == 5 and mid == end[0]
    frames = end[0]
    kernel = [i for i, f in enumerate(frames) if f.endswith("_[k]")]
    assert kernel and kernel == list(range(kernel[0], len(frames))), frames   # kernel last
    assert kernel[0] > 1                              # after comm and the user frames
    assert in_order(frames, ["entry_SYSCALL_64_after_hwframe_[k]", "do_syscall_64_[k]"])
    assert "mid\n" in during + "\n" and "@n[workload]: 5\n@s: 5\n" in folded
    # the rest, byte for byte as text mode (0.17's @k blocks and the folded lines removed;
    # @h's kernel frames too: another tracer on sys_enter adds __traceiter_sys_enter)
    frame_lines = re.compile(r"(?m)^    \S+\n")
    assert re.search(r"@h\[\n(    \S+\n)+\]: \n\[2, 4\) +5 \|@+\|\n", folded), folded
    assert (frame_lines.sub("", re.sub(r"(?m)^workload;.*\n", "", folded))
            == frame_lines.sub("", re.sub(r"@k\[.*?\]: \d+\n", "", text, flags=re.S)))


@needs_root
def test_frames_never_hold_a_separator(busy):
    """A comm with ';' and ending in ' <number>' (prctl) stays one frame and one count."""
    out = run(["-q", "-f", "folded", "-e", "tracepoint:syscalls:sys_enter_getppid "
               "/pid == cpid/ { @[kstack(1), comm] = count(); @u[ustack(raw), comm] = count(); }",
               "-c", f"{busy} name a;b\t7 3 0"])
    lines = folded_lines(split_exit(out)[1].strip("\n"))
    assert len(lines) == 2 and all(f[0] == "a_b_7" and c == 3 for f, c in lines), lines
    raw = [f for f, _ in lines if len(f) > 2]
    assert raw and all(re.fullmatch(r"0x[0-9a-f]+", fr) for fr in raw[0][1:]), lines


# --------------------------------------------------------------------- the line rules

def test_frame_rules():
    assert frame_text("a;b\nc") == "a_b_c"
    assert frame_text("Web Content 12") == "Web Content_12"      # not a second count
    assert frame_text("") == EMPTY_FRAME
    kernel = Stack([(0x2, "do_syscall_64+527"), (0x1, "entry_SYSCALL_64+118")], "bpftrace",
                   False, 1)
    user = Stack([(0x4, "leaf+3 (/bin/x)"), (0x3, "0x3 ([unknown])")], "perf", True, 2)
    empty = Stack(None, "bpftrace", True, -14)
    assert line_text((b"comm", kernel)) == "comm;entry_SYSCALL_64;do_syscall_64"
    assert (line_text((kernel, (b"x", 7), user)) ==
            "x;7;0x3 ([unknown]);leaf (/bin/x);entry_SYSCALL_64_[k];do_syscall_64_[k]")
    assert line_text((empty,)) == EMPTY_FRAME
    assert line_text((b"", empty)) == EMPTY_FRAME


def test_every_format_of_the_cli_has_an_output_class():
    assert list(FORMATS) == list(OUTPUTS)

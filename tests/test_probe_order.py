"""Several probes on one event run in the order the script lists them (bpftrace's
probe.uprobe_order / uretprobe_order / software_order / tracepoint_order): the
kernel runs uprobe, kprobe and perf-event programs newest attachment first, so the
runtime attaches those in reverse script order."""
import subprocess
import sys

import pytest

PYTRACE = [sys.executable, "-m", "pytrace.cli"]


def ordered(attach):
    """Three probes on `attach`: each records its position on every hit."""
    return "BEGIN { @n = 0; }\n" + "".join(f"{attach} /pid == cpid/ {{ @seq[@n] = {i}; @n = @n + 1; }}\n"
                   for i in (1, 2, 3))


@pytest.mark.parametrize("attach, work", [
    ("uprobe:{w}:add", "add 2"),
    ("uretprobe:{w}:add", "add 2"),
    ("tracepoint:syscalls:sys_enter_getppid", "getppid 2"),
    ("tracepoint:sched:sched_process_exit", "getppid 1"),
    ("software:page-faults:1", "getppid 1"),
])
def test_probes_on_one_event_run_in_script_order(workload, tracefs, attach, work):
    script = ordered(attach.replace("{w}", workload))
    r = subprocess.run(PYTRACE + ["-c", f"{workload} {work}", "-e", script],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seq = [int(line.split(": ")[1]) for line in r.stdout.splitlines() if line.startswith("@seq[")]
    keys = [int(line[5:line.index("]")]) for line in r.stdout.splitlines() if line.startswith("@seq[")]
    assert seq, r.stdout
    by_key = [v for _, v in sorted(zip(keys, seq))]
    assert by_key == [1, 2, 3] * (len(by_key) // 3), r.stdout

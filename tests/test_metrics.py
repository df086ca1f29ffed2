"""--metrics HOST:PORT: the live maps at /metrics (issue 11, part 3).

A real trace serves its maps; the OpenMetrics text is parsed with prometheus_client's
strict parser and checked for every map kind and the label names; and a real
Prometheus server (Debian's `prometheus`, started by .ci/run, or here when none
answers) scrapes a running trace, and what its query API gives equals the maps
pytrace prints at exit.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tracing needs root")

PYTRACE = [sys.executable, "-m", "pytrace.cli"]
HERE = Path(__file__).resolve().parent
PROMETHEUS_CONFIG = HERE / "prometheus.yml"
SCRAPED_PORT = 9477         # the target tests/prometheus.yml scrapes
CI_PROMETHEUS = "http://127.0.0.1:9090"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
NOTIFY = "__BPFTRACE_NOTIFY_PROBES_ATTACHED"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, accept: str = "*/*", timeout: float = 5) -> str:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Trace:
    """pytrace --metrics 127.0.0.1:PORT on a program, until stop()."""

    def __init__(self, port: int, program: str, *params: str):
        self.port = port
        self.p = subprocess.Popen(PYTRACE + ["--metrics", f"127.0.0.1:{port}", "-e", program,
                                             *params],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  errors="surrogateescape",
                                  env=dict(os.environ, **{NOTIFY: "1"}))
        for _ in range(50):         # the server is up before BEGIN runs and probes attach
            line = self.p.stderr.readline()
            if not line or line == NOTIFY + "\n":
                break
        assert line == NOTIFY + "\n", "pytrace did not start: " + line + self.p.stderr.read()

    def metrics(self, accept: str = OPENMETRICS) -> str:
        return get(f"http://127.0.0.1:{self.port}/metrics", accept)

    def stop(self) -> str:
        """SIGINT; the map dump pytrace prints at exit."""
        self.p.send_signal(signal.SIGINT)
        out, err = self.p.communicate(timeout=30)
        assert self.p.returncode == 0 and "ERROR" not in err, err
        return out


def families(text: str) -> dict:
    """{family name: {(sample name, sorted labels): value}} of OpenMetrics text."""
    out = {}
    for f in parse_om(text):
        out[f.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in f.samples}
        out[f.name]["type"] = f.type
    return out


# ------------------------------------------------------------------ every map kind

EVERY_KIND = """
BEGIN {
    @c[comm, pid] = count(); @c[comm, pid] = count();
    @c_total = count();
    @s = sum(5); @s = sum(-7);
    @mn[1] = min(5); @mn[1] = min(3);
    @mx = max(9); @mx = max(4);
    @a = avg(4); @a = avg(7);
    @st["x"] = stats(10); @st["x"] = stats(20);
    @h = hist(-3); @h = hist(0); @h = hist(1); @h = hist(1); @h = hist(5); @h = hist(1000);
    @l[cpu, cpu] = lhist(15, 0, 100, 10); @l[cpu, cpu] = lhist(-1, 0, 100, 10);
    @l[cpu, cpu] = lhist(500, 0, 100, 10);
    @p[probe] = 42;
    @str = "not a number";
    @ = count();
    @map = 7;
}
interval:s:100 { }
"""


def test_every_map_kind_and_its_labels():
    port = free_port()
    t = Trace(port, EVERY_KIND)
    try:
        text = t.metrics()
        legacy = t.metrics("text/plain")
    finally:
        dump = t.stop()
    fam = families(text)
    pid, cpu = str(t.p.pid), re.search(r"@l\[(\d+), ", dump).group(1)
    assert fam["pytrace_c"] == {"type": "counter",
                                ("pytrace_c_total", (("comm", "pytrace"), ("pid", pid))): 2}
    # @c_total, a counter, is pytrace_c_total, which @c has: pytrace_c_2_total
    assert fam["pytrace_c_2"] == {"type": "counter", ("pytrace_c_2_total", ()): 1}
    assert fam["pytrace_s"] == {"type": "gauge", ("pytrace_s", ()): -2}
    assert fam["pytrace_mn"] == {"type": "gauge", ("pytrace_mn", (("key0", "1"),)): 3}
    assert fam["pytrace_mx"] == {"type": "gauge", ("pytrace_mx", ()): 9}
    assert fam["pytrace_a"] == {"type": "gauge", ("pytrace_a", ()): 5}     # 11 / 2, as printed
    assert fam["pytrace_st"] == {"type": "summary", ("pytrace_st_count", (("key0", "x"),)): 2,
                                 ("pytrace_st_sum", (("key0", "x"),)): 30}
    assert fam["pytrace_p"] == {"type": "gauge", ("pytrace_p", (("probe", "BEGIN"),)): 42}
    # @ is pytrace_map; @map, whose name would clash with it, pytrace_map_2
    assert fam["pytrace_map"] == {"type": "counter", ("pytrace_map_total", ()): 1}
    assert fam["pytrace_map_2"] == {"type": "gauge", ("pytrace_map_2", ()): 7}
    assert "pytrace_str" not in fam
    # log2 buckets, each le the largest integer of its bucket; +Inf is the count
    h = {dict(k[1])["le"]: v for k, v in fam["pytrace_h"].items() if k != "type"}
    assert h == {"-1.0": 1, "0.0": 2, "1.0": 4, "3.0": 4, "7.0": 5, "15.0": 5, "31.0": 5,
                 "63.0": 5, "127.0": 5, "255.0": 5, "511.0": 5, "1023.0": 6, "+Inf": 6}
    # lhist: from the underflow bucket (le = min - 1) to the overflow bucket, which is
    # in +Inf only
    lbl = (("cpu", cpu), ("key1", cpu))
    lh = {dict(k[1])["le"]: v for k, v in fam["pytrace_l"].items() if k != "type"}
    assert lh == {"-1.0": 1, "9.0": 1, **{f"{b}9.0": 2 for b in range(1, 10)}, "+Inf": 3}
    assert all(k[1][0] == lbl[0] and k[1][1] == lbl[1] for k in fam["pytrace_l"] if k != "type")
    assert fam["pytrace_h"]["type"] == "histogram"
    # the help names the map; the Prometheus text format parses too
    helps = {f.name: f.documentation for f in parse_text(legacy)}
    assert helps["pytrace_c"] == "pytrace map @c: count()"
    assert helps["pytrace_map_2"] == "pytrace map @map: value"
    # what was served is what the exit dump prints
    assert f"@c[pytrace, {pid}]: 2\n" in dump and "@s: -2\n" in dump and "@a: 5\n" in dump
    assert not listening(port), "still listening after the exit"


def test_kstack_keys_are_folded_and_bad_utf8_escaped():
    port = free_port()
    t = Trace(port, 'BEGIN { @k[kstack, "a\\xff"] = count(); } interval:s:100 { }')
    try:
        fam = families(t.metrics())
    finally:
        t.stop()
    (labels,) = [dict(k[1]) for k in fam["pytrace_k"] if k != "type"]
    assert set(labels) == {"kstack", "key1"} and labels["key1"] == "a\\xff"
    frames = labels["kstack"].split(";")
    assert frames and all(frames) and "\n" not in labels["kstack"]


# ------------------------------------------------------------------ a real Prometheus

def _scrapes_our_target(url: str) -> bool:
    try:
        targets = json.loads(get(url + "/api/v1/targets", timeout=2))["data"]["activeTargets"]
    except (OSError, ValueError, KeyError):
        return False
    return any(t["scrapeUrl"] == f"http://127.0.0.1:{SCRAPED_PORT}/metrics" for t in targets)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """The query API of a Prometheus that scrapes 127.0.0.1:9477 each second: the one
    .ci/run started, or one started here from the `prometheus` binary."""
    if _scrapes_our_target(CI_PROMETHEUS):
        yield CI_PROMETHEUS
        return
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI: .ci/run installs and starts Prometheus, yet none answers")
        pytest.skip("no Prometheus on 127.0.0.1:9090 and no prometheus binary "
                    "(apt-get install prometheus)")
    tmp = tmp_path_factory.mktemp("prometheus")
    url = f"http://127.0.0.1:{free_port()}"
    log = open(tmp / "log", "w")
    p = subprocess.Popen([binary, f"--config.file={PROMETHEUS_CONFIG}",
                          f"--storage.tsdb.path={tmp / 'data'}",
                          f"--web.listen-address={url[len('http://'):]}"],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _scrapes_our_target(url):
            assert p.poll() is None and time.monotonic() < deadline, \
                "prometheus did not start: " + (tmp / "log").read_text()[-2000:]
            time.sleep(0.2)
        yield url
    finally:
        p.terminate()
        p.wait(timeout=30)
        log.close()


def query(url: str, expr: str) -> list:
    q = urllib.parse.urlencode({"query": expr})
    answer = json.loads(get(f"{url}/api/v1/query?{q}"))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


# writes of known sizes to /dev/null, then getppid calls: waits for a line on stdin first
WORKLOAD = """
import os, sys
fd = os.open("/dev/null", os.O_WRONLY)
print(os.getpid(), fd, flush=True)
sys.stdin.readline()
for n in (0, 1, 1, 3, 5, 8, 100, 1000, 4096):
    os.write(fd, b"x" * n)
for _ in range(500):
    os.getppid()
print("done", flush=True)
sys.stdin.readline()
"""
SIZES = 9
CALLS = 500
TRACED = """
tracepoint:syscalls:sys_enter_getppid /pid == $1/ { @calls[comm, pid] = count(); }
tracepoint:syscalls:sys_enter_write /pid == $1 && args->fd == $2/ { @sizes = hist(args->count); }
"""


def _le_of_label(label: str) -> str:
    """A printed hist row's label -> the le its bucket gets: the largest integer in it."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if label == "(..., 0)":
        return "-1.0"
    m = re.fullmatch(r"\[(\d+)([KMG]?)\]", label) or re.fullmatch(r"\[.*, (\d+)([KMG]?)\)", label)
    return "%.1f" % (int(m.group(1)) * units[m.group(2)] - (label.endswith(")")))


def printed_hist(dump: str) -> dict:
    """@sizes's rows, printed at exit, as cumulative {le: count}."""
    rows = re.findall(r"^(\S+(?:, \S+)?)\s+(\d+) \|", dump.split("@sizes:")[1], re.M)
    out, running = {}, 0
    for label, count in rows:
        running += int(count)
        out[_le_of_label(label)] = running
    out["+Inf"] = running
    return out


def _wait_for(url: str, expr: str, want: float, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    while True:
        result = query(url, expr)
        if result and float(result[0]["value"][1]) == want:
            return result
        assert time.monotonic() < deadline, f"{expr}: {result}, not {want}, after {timeout} s"
        time.sleep(0.5)


def test_prometheus_scrapes_a_running_trace(prometheus):
    if listening(SCRAPED_PORT):
        pytest.fail(f"port {SCRAPED_PORT}, which tests/prometheus.yml scrapes, is taken")
    wl = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    try:
        wpid, fd = wl.stdout.readline().split()
        t = Trace(SCRAPED_PORT, TRACED, wpid, fd)
        try:
            wl.stdin.write("go\n")
            wl.stdin.flush()
            assert wl.stdout.readline() == "done\n"
            counter = _wait_for(prometheus, f'pytrace_calls_total{{pid="{wpid}"}}', CALLS)
            _wait_for(prometheus, 'pytrace_sizes_bucket{le="+Inf"}', SIZES)
            buckets = query(prometheus, "pytrace_sizes_bucket")
        finally:
            dump = t.stop()
    finally:
        wl.communicate("\n", timeout=10)
    # the counter, its labels and value, is what the exit dump prints
    labels = counter[0]["metric"]
    assert labels["job"] == "pytrace" and labels["pid"] == wpid
    assert f"@calls[{labels['comm']}, {wpid}]: {CALLS}\n" in dump
    # the histogram's buckets are the printed hist's, cumulative
    queried = {b["metric"]["le"]: float(b["value"][1]) for b in buckets}
    assert queried == printed_hist(dump)
    assert queried["7.0"] == 5 and queried["1023.0"] == 8      # (0, 1, 1, 3, 5 | 8, 100, 1000)

#!/usr/bin/env python3
"""Regenerate the expected outputs of tests/golden/ from the real bpftrace.

    scripts/regen_golden.py [NAME ...] [--check] [--repeat N] [--bpftrace PATH]

For every case (or the NAMEs given) that has no NOTE file, run bpftrace the
same way tests/test_golden.py does and write:

  stdout  always;
  stderr  only if the case already has a `stderr` file (create an empty one
          to have a new error case's stderr recorded);
  rc      the exit code, when it is not 0 (the file is removed when it is 0).

Cases with a NOTE deviate from bpftrace 0.17 on purpose: they are skipped and
their expected files are maintained by hand.

--check     write nothing; report cases whose files differ, exit 1 if any
--repeat N  run each case N times and refuse to write unstable output
Needs root, like bpftrace itself.
"""

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="cases to regenerate (default: all)")
    ap.add_argument("--check", action="store_true", help="compare only, write nothing")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case (stability check)")
    ap.add_argument("--bpftrace", default="bpftrace", help="bpftrace command")
    opts = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("regen_golden.py: bpftrace needs root")
    conftest = _load("golden_conftest", TESTS / "conftest.py")
    golden = _load("golden_harness", TESTS / "test_golden.py")

    os.environ["GOLDEN_TOOL"] = opts.bpftrace
    kind, tool_cmd = golden.tool_from_env()
    kind = "bpftrace"  # always strip the RLIMIT line
    workload = conftest.build_workload()
    conftest.ensure_tracefs()

    names = opts.names or golden.case_names()
    unknown = [n for n in names if n not in golden.case_names()]
    if unknown:
        sys.exit(f"unknown case(s): {' '.join(unknown)}")

    bad = 0
    for name in names:
        case = golden.load_case(name)
        if case.note is not None:
            print(f"skip   {name} (NOTE)")
            continue
        results = []
        start = time.monotonic()
        for _ in range(max(1, opts.repeat)):
            out, err, rc, timed_out = golden.run_case(case, kind, tool_cmd, workload)
            results.append((out, err, rc))
            if timed_out:
                break
        took = (time.monotonic() - start) / len(results)
        if timed_out:
            print(f"ERROR  {name}: timed out")
            bad += 1
            continue
        if any(r != results[0] for r in results[1:]):
            print(f"ERROR  {name}: output differs between runs; not written")
            bad += 1
            continue
        out, err, rc = results[0]
        slow = f" (slow: {took:.2f} s)" if took > 2 else ""
        problems = golden.mismatches(case, out, err, rc, False)
        if not problems:
            print(f"same   {name}{slow}")
            continue
        if opts.check:
            print(f"DIFF   {name}{slow}")
            for p in problems:
                print("       " + p.replace("\n", "\n       "))
            bad += 1
            continue
        (case.path / "stdout").write_bytes(out)
        if case.stderr is not None:
            (case.path / "stderr").write_bytes(err)
        rc_file = case.path / "rc"
        if rc:
            rc_file.write_text(f"{rc}\n")
        elif rc_file.exists():
            rc_file.unlink()
        print(f"wrote  {name}{slow}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

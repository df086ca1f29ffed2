"""docs/errors.md, pinned: every row of its table of bad inputs is run and must end
with a non-zero exit, no Python traceback, and exactly the first ERROR line the
table gives (issue 13)."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
PYTRACE = [sys.executable, "-m", "pytrace.cli"]
HOW = {"compile": ["--emit-elf", os.devnull], "run": [], "run without capabilities": []}


def _cell(text: str) -> str:
    text = text.strip()
    fence = "``" if text.startswith("``") else "`"
    return text[len(fence):-len(fence)].strip()


def _rows():
    rows = []
    for line in DOC.read_text().splitlines():
        m = re.fullmatch(r"\| (\d+) \| ([^|]+) \| ([^|]+) \| (.+) \| (.+) \|", line)
        if m:
            rows.append(pytest.param(m.group(3).strip(), _cell(m.group(4)), _cell(m.group(5)),
                                     id=f"{m.group(1)}-{m.group(2).strip()}"))
    return rows


def _argv(text: str):
    """Shell words, with bash's $'…' quoting decoded; leading NAME=value: environment."""
    text = re.sub(r"\$'((?:[^'\\]|\\.)*)'",
                  lambda m: shlex.quote(m.group(1).encode().decode("unicode_escape")), text)
    words, env = shlex.split(text), dict(os.environ)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return words, env


def test_the_table_has_sixty_kinds_of_bad_input():
    assert len(_rows()) >= 60


@pytest.mark.skipif(os.geteuid() != 0, reason="the table is this machine's answers as root")
@pytest.mark.parametrize("how, given, message", _rows())
def test_bad_input_gets_its_message(how, given, message):
    words, env = _argv(given)
    cmd = PYTRACE + HOW[how] + words
    if how == "run without capabilities":
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines()
              if "ERROR" in line or line.startswith("pytrace: ")]   # getopt_long's, as bpftrace's
    assert errors and errors[0] == message, r.stderr

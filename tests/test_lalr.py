"""trace/language/lalr.py: lark's tables run without lark give lark's AST, and
errors still come from lark."""
import ast as pyast
import glob
import os
import re
import subprocess
import sys

import pytest

from pytrace.language import lalr
from pytrace.language import parser as P
from pytrace.language.diagnostics import CompileError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import fuzz  # noqa: E402


def _dump(x):
    """Everything a node holds, recursively (nodes compare by identity)."""
    if isinstance(x, (list, tuple)):
        return [type(x).__name__, *map(_dump, x)]
    if isinstance(x, dict):
        return {k: _dump(v) for k, v in x.items()}
    if isinstance(x, str):
        return (type(x).__name__, str(x), getattr(x, "type", None))
    if hasattr(x, "__dict__") and not isinstance(x, type):
        return type(x).__name__, {k: _dump(v) for k, v in sorted(vars(x).items())}
    return x


def _corpus():
    files = glob.glob(os.path.join(ROOT, "tests", "golden", "*", "*.pt")) \
        + glob.glob(os.path.join(ROOT, "tests", "golden", "*", "*.bt")) \
        + glob.glob(os.path.join(ROOT, "scripts", "*.pt"))
    sources = [open(f, encoding="utf-8").read() for f in files]
    # every string tests/test_parser.py hands to parse(): valid programs and errors
    tree = pyast.parse(open(os.path.join(ROOT, "tests", "test_parser.py"), encoding="utf-8").read())
    sources += [node.value for node in pyast.walk(tree)
                if isinstance(node, pyast.Constant) and isinstance(node.value, str) and "{" in node.value]
    chooser = fuzz.RandomChooser(12)
    sources += [fuzz.generate(chooser)[0] for _ in range(400)]
    return sources


def _blank_shebang(text):
    if text.startswith("#!"):
        nl = text.find("\n")
        return " " * (len(text) if nl < 0 else nl) + ("" if nl < 0 else text[nl:])
    return text


def test_the_tables_give_larks_ast_or_step_aside():
    fast = lalr.Parser(lalr.tables(P._get_parser()), re.compile)
    lark = P._get_parser()
    same = stepped_aside = 0
    for source in _corpus():
        text = _blank_shebang(source)
        try:
            expected = ("ok", _dump(lark.parse(text)))
        except Exception as e:      # lark's error, or the AST builder's
            expected = ("error", type(e).__name__)
        try:
            got = ("ok", _dump(fast.parse(text, P._AstBuilder())))
        except lalr.Unsupported:
            stepped_aside += 1
            assert expected[0] == "error", f"lark parses it, the tables do not: {source!r}"
            continue
        except CompileError:
            got = ("error", "CompileError")
        assert got == expected, source
        same += expected[0] == "ok"
    assert same > 300 and stepped_aside > 20


def test_tables_survive_marshal():
    import marshal
    tables = lalr.tables(P._get_parser())
    fast = lalr.Parser(marshal.loads(marshal.dumps(tables)), re.compile)
    source = 'kprobe:f /pid == 1/ { @x[comm, 2] = hist(arg0 + 1); if (@y > 0) { printf("%d\\n", $1); } }'
    assert _dump(fast.parse(source, P._AstBuilder())) == _dump(P._get_parser().parse(source))


def _run(code, cache):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, XDG_CACHE_HOME=str(cache)), timeout=120)


def test_a_parse_from_stored_tables_does_not_import_lark(tmp_path):
    code = ("import sys, pytrace.language.parser as P; "
            "p = P.parse('tracepoint:syscalls:sys_enter_getppid /pid == 7/ { exit(); }'); "
            "print(len(p.probes), 'lark' in sys.modules)")
    first = _run(code, tmp_path)
    assert (first.returncode, first.stdout, first.stderr) == (0, "1 True\n", "")  # tables taken from lark
    assert len(list((tmp_path / "pytrace").glob("lalr-*.marshal"))) == 1
    again = _run(code, tmp_path)
    assert (again.returncode, again.stdout, again.stderr) == (0, "1 False\n", "")


def test_an_error_is_larks(tmp_path):
    code = ("import pytrace.language.parser as P\n"
            "try:\n    P.parse('BEGIN { @x = ; }')\n"
            "except Exception as e:\n    print(e.diagnostics[0].message)")
    _run(code, tmp_path)     # tables stored
    r = _run(code, tmp_path)
    assert (r.returncode, r.stdout) == (0, "syntax error, unexpected ;\n"), r.stderr


def test_corrupt_tables_are_rebuilt(tmp_path):
    code = "import pytrace.language.parser as P; print(len(P.parse('BEGIN { @x = 1 }').probes))"
    _run(code, tmp_path)
    (tables,) = (tmp_path / "pytrace").glob("lalr-*.marshal")
    tables.write_bytes(b"garbage")
    r = _run(code, tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "1\n", "")
    assert tables.read_bytes() != b"garbage"


@pytest.mark.parametrize("tables", [{"format": lalr.FORMAT + 1}, {}])
def test_tables_of_another_format_are_refused(tables):
    with pytest.raises(lalr.Unsupported):
        lalr.Parser(tables, re.compile)

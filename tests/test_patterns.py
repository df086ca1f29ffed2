"""trace/language/patterns.py: regular expressions whose compiled form persists between runs."""
import re

from pytrace.language import parser
from pytrace.language.patterns import PatternCache

PATTERNS = [
    r"(?P<NAME>[A-Za-z_][A-Za-z0-9_]*)|(?P<INT>0[xX][0-9a-fA-F]+|[0-9]+)|(?P<WS>[ \t\n]+)",
    r'"(?:[^"\\\n]|\\[^\n])*"',
    r"\/\*(?:[^*]|\*(?!\/))*\*\/",
    r"(?:struct|union)(?![A-Za-z0-9_])\s*\{[^{}]*\}",
]
TEXTS = ["abc 12", "0x1F", '"a\\"b" x', "/* c */ d", "struct { int x; }", "  \n", "#"]


def same_results(a, b):
    assert a.pattern == b.pattern and a.flags == b.flags and a.groups == b.groups
    assert a.groupindex == b.groupindex
    for text in TEXTS:
        for pos in range(len(text)):
            ma, mb = a.match(text, pos), b.match(text, pos)
            assert (ma and (ma.group(0), ma.lastgroup, ma.span())) == \
                   (mb and (mb.group(0), mb.lastgroup, mb.span()))


def test_compiled_patterns_match_like_re(tmp_path):
    path = str(tmp_path / "p.marshal")
    first = PatternCache(path)
    for p in PATTERNS:
        same_results(first.compile(p), re.compile(p))
    first.save()
    second = PatternCache(path)                 # from the file, through _sre.compile
    assert set(second._entries) == {(p, 0) for p in PATTERNS}
    for p in PATTERNS:
        same_results(second.compile(p), re.compile(p))
    assert second.match(PATTERNS[0], "x1 y").group(0) == "x1"


def test_bad_patterns_raise_re_errors(tmp_path):
    cache = PatternCache(str(tmp_path / "p.marshal"))
    try:
        cache.compile("(unclosed")
    except re.error:
        pass
    else:
        raise AssertionError("no re.error")
    assert cache.error is re.error


def test_unusable_files_are_ignored(tmp_path):
    path = tmp_path / "p.marshal"
    path.write_bytes(b"not marshal data")
    cache = PatternCache(str(path))
    same_results(cache.compile(PATTERNS[1]), re.compile(PATTERNS[1]))
    cache.save()
    assert (PATTERNS[1], 0) in PatternCache(str(path))._entries
    readonly = PatternCache(str(tmp_path / "missing-dir" / "p.marshal"))
    readonly.compile(PATTERNS[1])
    readonly.save()                             # quietly not written


def test_the_parser_lexes_through_the_cache():
    # If lark's lexer layout changes, pytrace still parses (with plain re): this
    # test says the cache has stopped working.
    parser.parse("BEGIN { @x = 1; }")
    assert parser._PATTERNS is not None
    assert parser._PATTERNS._compiled

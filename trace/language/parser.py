"""The pytrace parser: bpftrace 0.17 (classic syntax) source text -> pytrace.language.ast.Program.

    from pytrace.language.parser import parse
    program = parse('BEGIN { @x = count(); }')

`parse()` raises `pytrace.language.diagnostics.CompileError` (one Diagnostic with a Span) for every
lexical or syntax error; no lark exception ever escapes.  Syntax errors read like bpftrace's
bison messages: ``syntax error, unexpected ;`` or ``syntax error, unexpected end of file,
expecting }``.

Implementation: the grammar (`grammar/pytrace.lark`, package `pytrace.grammar`) is parsed by
lark's LALR(1) parser with the contextual lexer, which is what tells attach points
(`uprobe:/bin/bash:readline`) apart from expressions, and the closing `/` of a predicate
from a division.  The AST is built while parsing (lark's inline transformer, `_AstBuilder`),
and spans are computed from the tokens.  The lark object is built lazily, once per process,
and the analysed grammar is cached on disk (`$XDG_CACHE_HOME/pytrace` or `~/.cache/pytrace`;
no cache if that is not writable).  lark itself is imported only on the first `parse()`.

Notes on the AST produced:
  * A unary minus applied directly to an integer literal is folded, as bpftrace does:
    `-5` and `- 0x10` give Integer(-5) / Integer(-16).  `-(5)`, `- -5` and `-$x` stay Unary.
  * Integer literals keep their unsigned value (0 .. 2**64-1), e.g. 0xffffffffffffffff is
    18446744073709551615; only folding makes them negative.
  * Bare identifiers are Builtin(name), whatever the name; unknown names are for the checker.
  * C definitions are returned as raw text: one string per preprocessor line (backslash
    continuations included) and one per struct/union/enum definition, always ending in
    `};` (the `;` after the `}` is optional in the source, as in bpftrace).
  * AttachPoint.raw is the exact text, quotes included; `provider` is the text before the
    first ':' (the whole text for BEGIN/END); `target`/`func` are left for a later pass.
  * Assign.target is always a Map or Variable, IncDec.target too: anything else is
    reported here, with bpftrace's messages (`syntax error, unexpected =, expecting }`,
    `Tuples are immutable once created...`, `The ++ operator must be applied to a map or
    variable`).

Deliberate differences from bpftrace 0.17 (all in what is accepted, none in the AST):
  * An attach point is one token: it ends at whitespace, ',', '{', '}', ';', or a '/'
    followed by whitespace or '/'.  So `kprobe : f` (spaces around ':') is not accepted,
    and `kprobe:f/ pid/` is (0.17 rejects it).
  * A cast needs a type: int8 .. uint64 (optionally with '*'s) or struct/union/enum NAME
    (optionally with '*'s).  `(foo)x` is not a cast, and `(a)` is a parenthesised
    identifier (0.17 takes `(IDENT)` for a cast and rejects `(a)`).
  * Error spans point at the offending token; bison's spans sometimes also cover the
    tokens before it.  Expected-token lists are an emulation of bison's and may differ.
"""
from __future__ import annotations

import _thread
import marshal
import os
import re
import sys
from _blake2 import blake2b      # hashlib's, without OpenSSL's start-up
from collections import Counter

from ..bytecode import write_file
from ..cache import home as cache_home
from ..cache import package_stamp
from . import lalr
from .ast import (
    Assign,
    AttachPoint,
    Binary,
    Break,
    Builtin,
    Call,
    Cast,
    Continue,
    ExprStmt,
    FieldAccess,
    If,
    IncDec,
    Index,
    Integer,
    Map,
    Positional,
    PositionalCount,
    Probe,
    Program,
    Return,
    Sizeof,
    Span,
    String,
    Ternary,
    Tuple,
    Unary,
    Unroll,
    Variable,
    While,
)
from .diagnostics import CompileError, error
from .patterns import PatternCache, interpreter_key

__all__ = ["parse"]

# Bumped whenever the lark options below change, so stale caches are not reused.
_OPTIONS_VERSION = "1"

_PARSER = None
_FAST = None            # lalr.Parser, False if there is none
_PATTERNS = None        # the lexer's PatternCache
_LOCK = _thread.RLock()     # _get_fast() may build the lark parser

# --------------------------------------------------------------- token names (bpftrace 0.17)

KEYWORDS = frozenset({
    "if", "else", "unroll", "while", "break", "continue", "return", "sizeof",
    "struct", "union", "enum",
})
# Names bpftrace 0.17's lexer returns as BUILTIN / CALL / CALL_BUILTIN / STACK_MODE tokens;
# used only to name an unexpected identifier the way bison does.
_BUILTIN_NAMES = frozenset(
    "pid tid uid gid nsecs elapsed numaid cpu curtask rand ctx comm args retval func probe "
    "username cgroup cpid".split()
    + [f"arg{i}" for i in range(10)] + [f"sarg{i}" for i in range(10)]
)
_CALL_NAMES = frozenset(
    "avg buf bswap cat cgroupid cgroup_path clear count debugf delete exit hist join kaddr "
    "kptr ksym lhist macaddr max min ntop override path print printf pton reg signal sizeof "
    "skboutput stats str strcontains strerror strftime strncmp sum system time uaddr uptr "
    "unwatch usym zero".split()
)
_CALL_BUILTIN_NAMES = frozenset({"kstack", "ustack"})
_STACK_MODE_NAMES = frozenset({"bpftrace", "perf"})

_TERMINAL_NAMES = {
    "$END": "end of file",
    "INT": "integer",
    "STRING": "string",
    "VAR": "variable",
    "MAP": "map",
    "POSITIONAL": "positional parameter",
    "CPREPROC": "preprocessor directive",
    "STRUCT_DEF": "struct definition",
    "TYPEDEF_DEF": "typedef",
    "NAMED_PTR_CAST": "(",
    "ENDPRED": "end predicate",
    "INT_TYPE": "identifier",
    "NAME": "identifier",
    "ATTACH": "identifier",
}

# bison lists expected tokens in declaration order; this is bpftrace 0.17's.
_ORDER = [
    "end of file", ":", ";", "{", "}", "[", "]", "(", ")", "?", "end predicate", '","', "$#",
    "=", "==", "!=", "<=", ">=", "<<", ">>", "<", ">", "&&", "||", "+", "++", "<<=", ">>=",
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "-", "--", "*", "/", "%", "&", "|", "^",
    "!", "~", ".", "->", "if", "else", "unroll", "struct", "union", "enum", "while", "return",
    "continue", "break", "sizeof", "builtin", "call", "call_builtin", "identifier",
    "preprocessor directive", "struct definition", "string", "map", "variable",
    "positional parameter", "integer", "stack_mode",
]
_ORDER_INDEX = {name: i for i, name in enumerate(_ORDER)}

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _classify_name(name: str) -> str:
    if name in KEYWORDS:
        return "call" if name == "sizeof" else name
    if name in _BUILTIN_NAMES:
        return "builtin"
    if name in _CALL_NAMES:
        return "call"
    if name in _CALL_BUILTIN_NAMES:
        return "call_builtin"
    if name in _STACK_MODE_NAMES:
        return "stack_mode"
    return "identifier"


# --------------------------------------------------------------- spans

def _tok_span(tok) -> Span:
    return Span(tok.line, tok.column, tok.end_line, tok.end_column)


def _start(x):
    if isinstance(x, list):
        x = x[0]
    if isinstance(x, _Block):
        return _start(x.open)
    if hasattr(x, "span"):
        return x.span.line, x.span.col
    return x.line, x.column


def _end(x):
    if isinstance(x, list):
        x = x[-1]
    if isinstance(x, _Block):
        return _end(x.close)
    if hasattr(x, "span"):
        return x.span.end_line, x.span.end_col
    return x.end_line, x.end_column


def _span(first, last=None) -> Span:
    """The span from the start of `first` to the end of `last` (tokens, nodes or blocks)."""
    if last is None:
        last = first
    a, b = _start(first), _end(last)
    return Span(a[0], a[1], b[0], b[1])


def _pos_span(text: str, start: int, end: int) -> Span:
    """A span from character offsets into `text`."""
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    end_line = line + text.count("\n", start, end)
    end_col = end - (text.rfind("\n", 0, end) + 1) + 1
    return Span(line, col, end_line, end_col)


def _fail(message: str, span: Span):
    raise error(message, span)


# --------------------------------------------------------------- literals

_U64_MAX = (1 << 64) - 1


def _int_value(text: str, span: Span) -> int:
    """Value of an integer literal, as bpftrace 0.17's lexer computes it."""
    if text[:2] in ("0x", "0X"):
        value = int(text[2:], 16)
    else:
        body = text.rstrip("uUlL").replace("_", "")
        if "e" in body or "E" in body:
            coef_text, exp_text = re.split("[eE]", body)
            coef, exp = int(coef_text, 10), int(exp_text, 10)
            if coef > 9:
                _fail(f"Coefficient part of scientific literal must be in range (0,9), got: {coef}", span)
            if exp > 16:
                _fail(f"Exponent will overflow integer range: {exp}", span)
            value = coef * 10 ** exp
        elif len(body) > 1 and body[0] == "0":
            if not all(c in "01234567" for c in body):
                _fail("Found trailing non-numeric characters", span)
            value = int(body, 8)
        else:
            value = int(body, 10)
    if value > _U64_MAX:
        _fail(f"integer literal out of range: {text}", span)
    return value


_SIMPLE_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", '"': b'"', "\\": b"\\"}
_OCT = "01234567"
_HEX = "0123456789abcdefABCDEF"


def _string_value(tok) -> bytes:
    """Decode a string literal token (with its quotes) to bytes."""
    raw = tok.value
    if "\\" not in raw:
        return raw[1:-1].encode("utf-8")
    out = bytearray()
    i, end = 1, len(raw) - 1
    while i < end:
        j = raw.find("\\", i, end)
        if j < 0:
            out += raw[i:end].encode("utf-8")
            break
        out += raw[i:j].encode("utf-8")
        c = raw[j + 1]          # the lexer guarantees a character after a backslash
        k = j + 2
        if c in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[c]
        elif c in _OCT:
            while k < end and k < j + 4 and raw[k] in _OCT:
                k += 1
            value = int(raw[j + 1:k], 8)
            if value > 255:
                _fail(f"octal escape sequence out of range '{raw[j:k]}'",
                      Span(tok.line, tok.column + j, tok.line, tok.column + k))
            out.append(value)
        elif c == "x" and k < end and raw[k] in _HEX:
            k += 1
            if k < end and raw[k] in _HEX:
                k += 1
            out.append(int(raw[j + 2:k], 16))
        else:
            _fail(f"invalid escape character '\\{c}'",
                  Span(tok.line, tok.column + j, tok.line, tok.column + k))
        i = k
    return bytes(out)


# --------------------------------------------------------------- AST builder

class _Block:
    """A `{ stmts }` block: the statements and the brace tokens (for spans)."""
    __slots__ = ("stmts", "open", "close")

    def __init__(self, stmts, open_tok, close_tok):
        self.stmts, self.open, self.close = stmts, open_tok, close_tok


class _CDef:
    __slots__ = ("text", "first", "last")

    def __init__(self, text, first, last):
        self.text, self.first, self.last = text, first, last


_NOFOLD = "_pytrace_nofold"   # set on Integer nodes that a unary minus must not fold

_ASSIGN_OPS = {"=": None, "+=": "+", "-=": "-", "*=": "*", "/=": "/", "%=": "%", "&=": "&",
               "|=": "|", "^=": "^", "<<=": "<<", ">>=": ">>"}


class _AstBuilder:
    """Callbacks for lark's inline transformer: one method per rule or alias in the grammar.
    Every callback gets all the rule's children, tokens included (keep_all_tokens=True).
    Stateless, so one instance serves every parse."""

    # ---- program

    def start(self, c):
        cdefs = [x for x in c if isinstance(x, _CDef)]
        probes = [x for x in c if isinstance(x, Probe)]
        first = cdefs[0].first if cdefs else probes[0]
        return Program([d.text for d in cdefs], probes,
                       [(d.first.line, d.first.column) for d in cdefs], span=_span(first, probes[-1]))

    def c_def(self, c):
        tok = c[0]
        if tok.type in ("CPREPROC", "TYPEDEF_DEF"):
            return _CDef(tok.value.rstrip("\r"), tok, tok)
        return _CDef(tok.value + ";", tok, c[-1])

    def late_c_def(self, c):
        tok = c[0]
        kind = {"CPREPROC": "preprocessor directive", "TYPEDEF_DEF": "typedef"}.get(
            tok.type, "struct definition")
        _fail(f"syntax error, unexpected {kind}, expecting {{", _tok_span(tok))

    def probe(self, c):
        attach, pred, _open, stmts, close = c
        return Probe(attach, pred, stmts, span=_span(attach[0], close))

    def attach_list(self, c):
        return c[0]

    def attach_points(self, c):
        tok = c[-1]
        raw = tok.value
        ap = AttachPoint(raw, provider=raw.split(":", 1)[0], span=_tok_span(tok))
        if len(c) == 1:
            return [ap]
        c[0].append(ap)
        return c[0]

    def pred(self, c):
        return c[1] if c else None

    def block(self, c):
        return _Block(c[1], c[0], c[2])

    # ---- statements

    def stmts(self, c):
        if len(c) == 2:
            c[0].append(c[1])
        return c[0]

    def stmt_list(self, c):
        if not c:
            return []
        c[0].append(c[1])
        return c[0]

    def expr_stmt(self, c):
        return ExprStmt(c[0], span=c[0].span)

    def assign(self, c):
        target, op, value = c
        span = _span(target, value)
        if not isinstance(target, (Map, Variable)):
            if (op.value == "=" and isinstance(target, FieldAccess) and not target.arrow
                    and target.field.isdigit() and isinstance(target.expr, (Map, Variable))):
                _fail("Tuples are immutable once created. Consider creating a new tuple "
                      "and assigning it instead.", span)
            # Only maps and variables can be assigned to: bpftrace's grammar has
            # `map = expr` and `var = expr` statements (and the tuple rule above).
            _fail(f"syntax error, unexpected {op.value}, expecting }}", _tok_span(op))
        return Assign(target, value, _ASSIGN_OPS[op.value], span=span, op_span=_tok_span(op))

    def break_stmt(self, c):
        return Break(span=_tok_span(c[0]))

    def continue_stmt(self, c):
        return Continue(span=_tok_span(c[0]))

    def return_stmt(self, c):
        return Return(span=_tok_span(c[0]))

    def unroll_stmt(self, c):
        tok = c[2]
        if tok.type == "INT":
            count = Integer(_int_value(tok.value, _tok_span(tok)), span=_tok_span(tok))
        else:
            count = self.positional([tok])
        return Unroll(count, c[4].stmts, span=_span(c[0], c[4]))

    def while_stmt(self, c):
        return While(c[2], c[4].stmts, span=_span(c[0], c[4]))

    def if_stmt(self, c):
        cond, then = c[2], c[4]
        orelse = None
        if len(c) == 7:
            other = c[6]
            orelse = other.stmts if isinstance(other, _Block) else [other]
        return If(cond, then.stmts, orelse, span=_span(c[0], c[-1]))

    # ---- expressions

    def ternary(self, c):
        return Ternary(c[0], c[2], c[4], span=_span(c[0], c[4]))

    def binop(self, c):
        left, op, right = c
        return Binary(op.value, left, right, span=_span(left, right), op_span=_tok_span(op))

    def cast(self, c):
        return Cast(c[1], c[3], span=_span(c[0], c[3]), type_span=_span(c[0], c[2]))

    def named_cast(self, c):
        name = c[0].value[1:-1].replace("*", " ").split()[0]
        stars = c[0].value.count("*")
        return Cast(f"{name} {'*' * stars}", c[1], span=_span(c[0], c[1]),
                    type_span=_tok_span(c[0]))

    def unop(self, c):
        op, operand = c
        span = _span(op, operand)
        if op.value == "-" and type(operand) is Integer and not getattr(operand, _NOFOLD, False):
            node = Integer(-operand.value, span=span)
            setattr(node, _NOFOLD, True)      # bpftrace: `- -5` is Unary('-', Integer(-5))
            return node
        return Unary(op.value, operand, span=span)

    def _incdec(self, op, target, prefix, span):
        if not isinstance(target, (Map, Variable)):
            if isinstance(target, Builtin):
                _fail(f"The {op.value} operator must be applied to a map or variable", target.span)
            # bpftrace's grammar only has `++ map/var/ident` and `map/var/ident ++`.
            if prefix and _leading_token_name(target) not in ("map", "variable", "identifier"):
                _fail(f"syntax error, unexpected {_leading_token_name(target)}",
                      Span(target.span.line, target.span.col, target.span.line, target.span.col + 1))
            if prefix:
                _fail(f"The {op.value} operator must be applied to a map or variable", target.span)
            _fail(f"syntax error, unexpected {op.value}", _tok_span(op))
        return IncDec(op.value, prefix, target, span=span)

    def pre_incdec(self, c):
        return self._incdec(c[0], c[1], True, _span(c[0], c[1]))

    def post_incdec(self, c):
        return self._incdec(c[1], c[0], False, _span(c[0], c[1]))

    def dot(self, c):
        return FieldAccess(c[0], c[2].value, False, span=_span(c[0], c[2]))

    def arrow(self, c):
        return FieldAccess(c[0], c[2].value, True, span=_span(c[0], c[2]))

    def index(self, c):
        return Index(c[0], c[2], span=_span(c[0], c[3]))

    def field(self, c):
        return c[0]

    def integer(self, c):
        tok = c[0]
        span = _tok_span(tok)
        return Integer(_int_value(tok.value, span), span=span)

    def string(self, c):
        return String(_string_value(c[0]), span=_tok_span(c[0]))

    def ident(self, c):
        tok = c[0]
        if tok.value in KEYWORDS:
            _fail(f"syntax error, unexpected {_classify_name(tok.value)}", _tok_span(tok))
        return Builtin(tok.value, span=_tok_span(tok))

    def positional(self, c):
        tok = c[0]
        index = int(tok.value[1:])
        if index < 1 or index > (1 << 63) - 1:
            _fail(f"param {tok.value} is out of integer range [1, 9223372036854775807]",
                  _tok_span(tok))
        return Positional(index, span=_tok_span(tok))

    def positional_count(self, c):
        return PositionalCount(span=_tok_span(c[0]))

    def variable(self, c):
        return Variable(c[0].value, span=_tok_span(c[0]))

    def map(self, c):
        if len(c) == 1:
            return Map(c[0].value, None, span=_tok_span(c[0]))
        return Map(c[0].value, c[2], span=_span(c[0], c[3]))

    def call(self, c):
        name = c[0]
        if name.value in KEYWORDS:
            _fail(f"syntax error, unexpected {_classify_name(name.value)}", _tok_span(name))
        args = c[2] if len(c) == 4 else []
        return Call(name.value, args, span=_span(name, c[-1]))

    def sizeof_type(self, c):
        return Sizeof(type_name=c[2], span=_span(c[0], c[3]))

    def sizeof_expr(self, c):
        return Sizeof(operand=c[2], span=_span(c[0], c[3]))

    def paren(self, c):
        inner = c[1]
        if type(inner) is Integer:
            setattr(inner, _NOFOLD, True)     # bpftrace: -(5) is Unary('-', Integer(5))
        # 0.17 locates a parenthesised expression from its `(` (to the inner end)
        inner.span = _span(c[0], inner)
        return inner

    def tuple(self, c):
        return Tuple([c[1]] + c[3], span=_span(c[0], c[4]))

    def args(self, c):
        if len(c) == 1:
            return [c[0]]
        c[0].append(c[2])
        return c[0]

    def type(self, c):
        if c[0].type == "INT_TYPE":
            name = c[0].value
            stars = c[1] if len(c) == 2 else 0
        else:
            name = f"{c[0].value} {c[1].value}"
            stars = c[2] if len(c) == 3 else 0
        return f"{name} {'*' * stars}" if stars else name

    def stars(self, c):
        return 1 if len(c) == 1 else c[0] + 1


def _leading_token_name(node) -> str:
    """bpftrace's name for the first token of an expression (for error messages)."""
    while True:
        if isinstance(node, (Binary,)):
            node = node.left
        elif isinstance(node, (Index, FieldAccess)):
            node = node.expr
        elif isinstance(node, Ternary):
            node = node.cond
        elif isinstance(node, IncDec) and not node.prefix:
            node = node.target
        else:
            break
    if isinstance(node, Integer):
        return "-" if node.value < 0 else "integer"
    if isinstance(node, String):
        return "string"
    if isinstance(node, (Call, Builtin)):
        return _classify_name(node.name)
    if isinstance(node, Map):
        return "map"
    if isinstance(node, Variable):
        return "variable"
    if isinstance(node, Sizeof):
        return "call"
    if isinstance(node, Positional):
        return "positional parameter"
    if isinstance(node, PositionalCount):
        return "$#"
    if isinstance(node, (Unary, IncDec)):
        return node.op
    return "("


# --------------------------------------------------------------- lexer-level errors

class _LexAbort(Exception):
    def __init__(self, message, tok):
        super().__init__(message)
        self.message, self.tok = message, tok


def _bad_string(tok):
    raise _LexAbort("unterminated string", tok)


def _bad_comment(tok):
    raise _LexAbort("end of file during comment", tok)


def _ignored_token_span(tok) -> Span:
    # Ignored tokens carry only their start position.
    value = tok.value
    nl = value.count("\n")
    if nl:
        return Span(tok.line, tok.column, tok.line + nl, len(value) - value.rfind("\n"))
    return Span(tok.line, tok.column, tok.line, tok.column + len(value))


# --------------------------------------------------------------- the lark object

def _grammar_text() -> str:
    # the data package pytrace.grammar, found without an import of the package
    # `pytrace` (whose lazy API names import the compiler: tests/test_layering.py)
    # (each finder asked as importlib.util.find_spec asks them: importing that is 1-2 ms)
    top = __package__.rpartition(".")[0]
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find(top + ".grammar", sys.modules[top].__path__) if find else None
        if spec is not None:
            break
    with open(os.path.join(os.path.dirname(spec.origin), "pytrace.lark"), encoding="utf-8") as f:
        return f.read()


def _cache_files(grammar_text: str):
    """Where to cache lark's analysed grammar, the tables of trace/language/lalr.py
    and the lexer's compiled patterns (trace/language/patterns.py), or
    (None, None, None) if there is no writable cache directory."""
    directory = cache_home()
    try:
        os.makedirs(directory, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            return None, None, None
    except (OSError, ValueError):
        return None, None, None
    grammar_key = "\0".join((grammar_text, package_stamp("lark"), _OPTIONS_VERSION))

    def name(*parts):
        return blake2b("\0".join((grammar_key, *parts)).encode("utf-8"), digest_size=8).hexdigest()
    return (os.path.join(directory, f"parser-{name()}.lark"),
            os.path.join(directory, f"lalr-{name(str(lalr.FORMAT))}.marshal"),
            os.path.join(directory, f"patterns-{name(interpreter_key())}.marshal"))


def _import_lark():
    """Import lark without letting it import the third-party `regex` module (7 ms of a
    ~150 ms cold start), which it loads whenever installed, only for its `regex=True`
    option; pytrace's terminals are plain `re` patterns."""
    if "lark" in sys.modules:
        return sys.modules["lark"]
    hide = "regex" not in sys.modules
    if hide:
        sys.modules["regex"] = None     # makes `import regex` raise ImportError
    try:
        # lazy: start-up time (importing the parser module does not load lark)
        import lark
    finally:
        if hide:
            del sys.modules["regex"]
    return lark


def _build():
    lark = _import_lark()
    text = _grammar_text()
    options = dict(
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        keep_all_tokens=True,
        maybe_placeholders=False,
        transformer=_AstBuilder(),
        lexer_callbacks={"BAD_STRING": _bad_string, "BAD_COMMENT": _bad_comment},
    )
    grammar_cache, _tables, patterns_cache = _cache_files(text)
    try:
        parser = lark.Lark(text, cache=grammar_cache or False, **options)
    except OSError:
        # An unreadable or unwritable cache file: carry on without it.
        parser = lark.Lark(text, cache=False, **options)
    return parser, _use_pattern_cache(parser, patterns_cache)


def _use_pattern_cache(parser, path):
    """Make lark's per-state lexers compile their terminal alternations through a
    PatternCache, which keeps them between runs.  Returns the cache (None if lark's
    lexers are not laid out as expected: they then compile with `re` as usual)."""

    contextual = getattr(getattr(parser, "parser", None), "lexer", None)
    lexers = getattr(contextual, "lexers", None)
    if not isinstance(lexers, dict):
        return None
    basics = [*lexers.values(), getattr(contextual, "root_lexer", None)]
    if not all(getattr(b, "re", None) is re for b in basics):
        return None
    cache = PatternCache(path)
    for basic in basics:
        basic.re = cache
    return cache


def _get_parser():
    global _PARSER, _PATTERNS
    if _PARSER is None:
        with _LOCK:
            if _PARSER is None:
                _PARSER, _PATTERNS = _build()
    return _PARSER


def _get_fast():
    """trace/language/lalr.py's parser on lark's tables (read from the cache, or
    taken from lark once and stored), or None if there are none to be had."""
    global _FAST
    if _FAST is None:
        with _LOCK:
            if _FAST is None:
                _FAST = _load_fast() or False
    return _FAST or None


def _load_fast():
    global _PATTERNS
    _grammar_cache, path, patterns_path = _cache_files(_grammar_text())
    tables = None
    if path:
        try:
            with open(path, "rb") as f:
                tables = marshal.loads(f.read())
        except (OSError, EOFError, ValueError, TypeError):
            pass
    if not isinstance(tables, dict) or tables.get("format") != lalr.FORMAT:
        try:
            tables = lalr.tables(_get_parser())
        except lalr.Unsupported:
            return None
        if path:
            write_file(path, marshal.dumps(tables))
    if _PATTERNS is None:
        _PATTERNS = PatternCache(patterns_path)
    try:
        return lalr.Parser(tables, _PATTERNS.compile)
    except (lalr.Unsupported, KeyError, TypeError):
        return None


# --------------------------------------------------------------- syntax errors

def _terminal_display(parser, name: str):
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    term = parser.get_terminal(name) if hasattr(parser, "get_terminal") else None
    if term is not None and term.pattern.type == "str":
        value = term.pattern.value
        return '","' if value == "," else value
    return None


def _expected_after_default_reductions(e):
    """Like bison (default reductions, no LAC): reduce by each state's most common rule
    until reaching a state with only shifts; its terminals are what was expected."""
    # lazy: start-up time (lark)
    from lark.parsers.lalr_analysis import Reduce, Shift

    pstate = e.state
    states = pstate.parse_conf.parse_table.states
    stack = list(pstate.state_stack)

    def shifts(state):
        names = [name for name, (action, _arg) in states[state].items()
                 if action is Shift and (name.isupper() or name.startswith("$"))]
        # bpftrace's attach points may be empty, so where one could start bison
        # reduces an empty one and then expects the '{' of the action block.
        return ["LBRACE"] if "ATTACH" in names else names

    for _ in range(200):
        current = stack[-1]
        actions = states[current]
        reduces = [arg for action, arg in actions.values() if action is Reduce]
        if not reduces:
            break
        rule = Counter(reduces).most_common(1)[0][0]
        n = len(rule.expansion)
        if n:
            del stack[-n:]
        goto = states[stack[-1]].get(rule.origin.name) if stack else None
        if goto is None or rule.origin.name == "start":
            # Reduced to the start symbol: what could have been shifted instead?
            return shifts(current)
        stack.append(goto[1])
    return shifts(stack[-1])


def _describe_token(tok):
    """bpftrace's name for an unexpected token, and the token's span."""
    kind = tok.type
    if kind in ("NAME", "ATTACH", "INT_TYPE"):
        m = _IDENT_RE.match(tok.value)
        if m:
            span = Span(tok.line, tok.column, tok.line, tok.column + m.end())
            return _classify_name(m.group()), span
        return "identifier", _tok_span(tok)
    if tok.value in KEYWORDS:
        return _classify_name(tok.value), _tok_span(tok)
    name = _TERMINAL_NAMES.get(kind)
    if name is None:
        name = '","' if tok.value == "," else tok.value
    return name, _tok_span(tok)


def _inside_braces_or_predicate(e) -> bool:
    for value in getattr(e.state, "value_stack", ()):
        if getattr(value, "type", None) is not None and getattr(value, "value", None) in ("{", "/"):
            return True
    return False


def _syntax_error(parser, e, text: str) -> CompileError:
    tok = e.token
    if tok.type == "$END":
        # lark gives $END the position of the last token.
        end = getattr(tok, "end_pos", None)
        if end is None or tok.end_line is None:
            span = _pos_span(text, len(text), len(text))
        elif text[end:] == "":
            span = _tok_span(tok)
        else:
            span = _pos_span(text, len(text), len(text))
        if not _inside_braces_or_predicate(e):
            return error("unexpected end of file, expected {", span)
        unexpected = "end of file"
    else:
        unexpected, span = _describe_token(tok)
    message = f"syntax error, unexpected {unexpected}"
    try:
        expected = _expected_after_default_reductions(e)
    except Exception:        # lark internals changed: just leave the list out
        expected = None
    if expected:
        names = []
        for name in expected:
            shown = _terminal_display(parser, name)
            if shown and shown not in names:
                names.append(shown)
        if 0 < len(names) <= 4:
            names.sort(key=lambda n: _ORDER_INDEX.get(n, len(_ORDER)))
            message += ", expecting " + " or ".join(names)
    return error(message, span)


# --------------------------------------------------------------- entry point

def parse(source: str, filename: str = "stdin") -> Program:
    """Parse a bpftrace program.  Raises CompileError on any lexical or syntax error.

    `filename` is accepted for the callers' convenience (diagnostics are rendered with
    diagnostics.render(diag, source, filename)); spans do not depend on it."""
    text = source
    if text.startswith("#!"):
        # A shebang line is ignored; keep the line so that positions stay right.
        nl = text.find("\n")
        text = " " * (len(text) if nl < 0 else nl) + ("" if nl < 0 else text[nl:])
    fast = _get_fast()
    if fast is not None:
        try:
            return fast.parse(text, _AstBuilder())
        except Exception:   # lalr.Unsupported, or an error: lark gives its words
            pass
        finally:
            if _PATTERNS is not None:
                _PATTERNS.save()
    parser = _get_parser()
    # lazy: start-up time (lark)
    from lark.exceptions import LarkError

    try:
        return parser.parse(text)
    except _LexAbort as e:
        raise error(e.message, _ignored_token_span(e.tok)) from None
    except LarkError as e:
        raise _lark_error(parser, e, text) from None
    finally:
        if _PATTERNS is not None:
            _PATTERNS.save()


def _lark_error(parser, e, text: str) -> CompileError:
    # lazy: start-up time (lark)
    from lark.exceptions import UnexpectedCharacters, UnexpectedToken

    if isinstance(e, UnexpectedToken):
        return _syntax_error(parser, e, text)
    if isinstance(e, UnexpectedCharacters):
        pos = e.pos_in_stream
        char = text[pos] if 0 <= pos < len(text) else ""
        return error(f"invalid character '{char}'", _pos_span(text, pos, pos + 1))
    return error(f"syntax error: {e}")

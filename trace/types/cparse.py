"""The C declarations that stand before the probes of a script → C types.

    decls = parse([(text, line, col), ...], include_dirs=(), includes=(), btf_fallback=None)
    decls.space.lookup("struct Foo")     # a CRecord (cmodel.py), laid out as gcc on x86-64
    decls.macros["EPERM"]                # 1: #define'd integer/string constants
    decls.enums["RED"]                   # enumerators

pcpp (pure-Python preprocessor) runs the #include/#define/#if directives; pycparser
parses the result; this module turns pycparser's tree into cmodel types.  The chunks
are laid out at their script line/column, so positions in the preprocessed text are
script positions.  GNU extensions of system headers are defined away before
parsing; `__attribute__((packed))` and `aligned(N)` on a struct are kept as marker
members.  Types the script does not define (`struct task_struct`) come from
`btf_fallback` (name → CType or None, e.g. cmodel.btf_fallback(vmlinux())).
Every problem is a located CompileError at the script position (for a header: its
#include line).  pcpp and pycparser are imported by parse() only.
"""
from __future__ import annotations

import ast as pyast
import glob
import os
import re

from ..language.ast import Span
from ..language.diagnostics import CompileError, error
from ..runtime.record import field, record
from . import cmodel as M

SCRIPT = "<script>"
PRELUDE_FILE = "<pytrace>"
SYSTEM_DIRS = ("/usr/local/include", "/usr/include/x86_64-linux-gnu", "/usr/include")
VMLINUX = "/sys/kernel/btf/vmlinux"

# macros that neutralise what pycparser does not know, and gcc's predefined ones
PREDEFINED = """\
__extension__=|__restrict=|__restrict__=|__inline=inline|__inline__=inline|
__asm__(...)=|__asm(...)=|__volatile__=volatile|__volatile=volatile|__signed__=signed|
__signed=signed|__const=const|_Noreturn=|__noreturn=|__float128=long double|__builtin_va_list=__pytrace_va_list|__int128=__pytrace_int128|
__x86_64__=1|__x86_64=1|__amd64__=1|__linux__=1|__linux=1|__unix__=1|__unix=1|__gnu_linux__=1|
__LP64__=1|_LP64=1|__CHAR_BIT__=8|__SIZEOF_INT__=4|__SIZEOF_LONG__=8|__SIZEOF_LONG_LONG__=8|
__SIZEOF_SHORT__=2|__SIZEOF_POINTER__=8|__SIZEOF_FLOAT__=4|__SIZEOF_DOUBLE__=8|
__SIZEOF_LONG_DOUBLE__=16|__SIZEOF_SIZE_T__=8|__SIZEOF_WCHAR_T__=4|__SIZEOF_WINT_T__=4|
__SIZEOF_PTRDIFF_T__=8|__GNUC__=4|__GNUC_MINOR__=2|__GNUC_PATCHLEVEL__=1|__STDC__=1|
__STDC_VERSION__=201112L|__STDC_HOSTED__=1|__ORDER_LITTLE_ENDIAN__=1234|
__ORDER_BIG_ENDIAN__=4321|__ORDER_PDP_ENDIAN__=3412|__BYTE_ORDER__=__ORDER_LITTLE_ENDIAN__|
__SIZE_TYPE__=unsigned long|__PTRDIFF_TYPE__=long|__WCHAR_TYPE__=int|
__WINT_TYPE__=unsigned int|__INTMAX_TYPE__=long|__UINTMAX_TYPE__=unsigned long|
__CHAR16_TYPE__=unsigned short|__CHAR32_TYPE__=unsigned int|__INTPTR_TYPE__=long|
__UINTPTR_TYPE__=unsigned long|__INT8_TYPE__=signed char|__INT16_TYPE__=short|
__INT32_TYPE__=int|__INT64_TYPE__=long|__UINT8_TYPE__=unsigned char|
__UINT16_TYPE__=unsigned short|__UINT32_TYPE__=unsigned int|__UINT64_TYPE__=unsigned long|
__INT_MAX__=0x7fffffff|__LONG_MAX__=0x7fffffffffffffffL|__SCHAR_MAX__=0x7f|
__SHRT_MAX__=0x7fff|__LONG_LONG_MAX__=0x7fffffffffffffffLL|__WCHAR_MAX__=0x7fffffff|
__builtin_offsetof(t, m)=((unsigned long)&((t *)0)->m)|__typeof__=typeof|__alignof__=_Alignof"""

# typedefs pycparser must know before the text (placeholders resolved by name)
PRELUDE_C = """\
typedef struct __pytrace_va_list_tag { unsigned int gp_offset; unsigned int fp_offset;
  void *overflow_arg_area; void *reg_save_area; } __pytrace_va_list[1];
typedef int __pytrace_int128;
"""

C_KEYWORDS = frozenset(
    ["auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "_Bool", "_Complex", "_Alignas", "_Alignof", "_Atomic", "_Noreturn", "_Static_assert", "_Thread_local"])


@record
class CDecls:
    space: M.TypeSpace
    macros: dict
    enums: dict
    warnings: list = field(default_factory=list)    # Diagnostics (missing_ok: includes not found)


class _Fail(Exception):
    """An error at (source, line, col) of the preprocessed text, located later."""

    def __init__(self, message, source=None, line=0, col=0, length=1):
        super().__init__(message)
        self.message, self.source, self.line, self.col, self.length = \
            message, source, line, col, length


def parse(chunks, include_dirs=(), includes=(), btf_fallback=None, missing_ok=False) -> CDecls:
    """Parse the script's C chunks ((text, line, col), 1-based) → CDecls.
    missing_ok: an #include that is not found is a warning (the kernel's types come
    from BTF, as bpftrace 0.17 goes on without the header), not an error."""
    chunks = sorted(chunks, key=lambda c: (c[1], c[2]))
    text = _script_text(chunks)
    pre = None
    try:
        pre = _preprocessor(include_dirs)
        pre.missing_ok = missing_ok
        src = _preprocess(pre, text, includes)
        src = _strip_attributes(src)[0]
        space = M.TypeSpace(btf_fallback)
        builder = _Builder(space, text)
        builder.build(_cparse(src, text, space, builder))
        warnings = [_located(m, text, pre).diagnostics[0] for m in pre.missing]
        for w in warnings:
            w.level = "WARNING"
        return CDecls(space, _macros(pre), builder.enums, warnings)
    except _Fail as e:
        raise _located(e, text, pre) from None
    except CompileError:
        raise
    except RecursionError:
        raise error("C definitions nest too deeply", _first_span(chunks)) from None
    except Exception as e:  # noqa: BLE001 -- no traceback may escape
        raise error(f"C definitions: {type(e).__name__}: {e}", _first_span(chunks)) from None


def _first_span(chunks) -> Span:
    if not chunks:
        return Span(0, 0, 0, 0)
    return Span(chunks[0][1], chunks[0][2], chunks[0][1], chunks[0][2] + 1)


def _script_text(chunks) -> str:
    """The chunks placed at their script line and column (blank elsewhere)."""
    out = []
    line, col = 1, 1
    for text, cline, ccol in chunks:
        if cline > line:
            out.append("\n" * (cline - line))
            line, col = cline, 1
        if cline == line and ccol > col:
            out.append(" " * (ccol - col))
            col = ccol
        out.append(text)
        nl = text.count("\n")
        line += nl
        col = (len(text) - text.rfind("\n")) if nl else col + len(text)
    return "".join(out) + "\n"


# ---------------------------------------------------------------- preprocessing

_PRE_CLASS = None


def _preprocessor(include_dirs):
    global _PRE_CLASS
    if _PRE_CLASS is None:
        _PRE_CLASS = _make_preprocessor_class()
    pre = _PRE_CLASS()
    for d in PREDEFINED.replace("\n", "").split("|"):
        name, _, value = d.partition("=")
        pre.define(f"{name} {value}")
    if os.path.exists(VMLINUX):
        pre.define("BPFTRACE_HAVE_BTF 1")
    pre.predefined = set(pre.macros)
    gcc = sorted(glob.glob("/usr/lib/gcc/x86_64-linux-gnu/*/include"))
    for d in list(include_dirs) + list(SYSTEM_DIRS) + gcc[-1:]:
        pre.add_path(d)
    return pre


def _make_preprocessor_class():
    from pcpp import Preprocessor
    from pcpp.parser import Action, OutputDirective

    class Pre(Preprocessor):
        def __init__(self):
            super().__init__()
            self.errors = []
            self.parents = {}          # header path -> (source, line) of its #include
            self.passthru_includes = None
            self.missing_ok = False
            self.missing = []          # includes not found (missing_ok)

        def on_error(self, file, line, msg):
            self.errors.append(_Fail(msg, file, line))

        def on_file_open(self, is_system_include, includepath):
            f = super().on_file_open(is_system_include, includepath)
            d = self.lastdirective
            if d is not None:
                self.parents.setdefault(includepath, (d.source, d.lineno))
                self.parents.setdefault(os.path.abspath(includepath), (d.source, d.lineno))
            return f

        def on_include_not_found(self, is_malformed, is_system_include, curdir, includepath):
            d = self.lastdirective
            what = f"'{includepath}' file not found" if not is_malformed else \
                f"malformed #include {includepath}"
            fail = _Fail(what, d.source if d else None, d.lineno if d else 0)
            if not self.missing_ok or is_malformed:
                raise fail
            self.missing.append(fail)
            raise OutputDirective(Action.IgnoreAndRemove)

        def on_directive_unknown(self, directive, toks, ifpassthru, precedingtoks):
            if directive.value == "error":
                msg = "".join(t.value for t in toks).strip()
                self.errors.append(_Fail(f"#error {msg}", directive.source, directive.lineno))
            return True

        def on_comment(self, tok):
            return False

    return Pre


def _preprocess(pre, text: str, includes) -> str:
    """Run the directives; the result carries `#line` marks for pycparser."""
    if includes:
        lines = []
        for inc in includes:
            inc = inc.strip()
            if not inc.startswith(("<", '"')):
                inc = f'"{inc}"' if os.path.isabs(inc) else f"<{inc}>"
            lines.append(f"#include {inc}\n")
        pre.parse("".join(lines), "<includes>")
        head = _emit(pre)
    else:
        head = ""
    pre.parse(text, SCRIPT)
    body = _emit(pre)
    if pre.errors:
        raise pre.errors[0]
    return f'#line 1 "{PRELUDE_FILE}"\n' + PRELUDE_C + head + body


def _emit(pre) -> str:
    """The tokens as text, whitespace kept (so columns stay), a `#line` mark wherever
    the source or line changes other than by one."""
    out = []
    line = []
    last = None
    for tok in iter(pre.token, None):
        if tok.type == "CPP_WS" and "\n" in tok.value:
            if line:
                out.append("".join(line))
                line = []
            continue
        if tok.type in ("CPP_LINECONT", "CPP_COMMENT1", "CPP_COMMENT2"):
            continue
        if not line:
            key = (tok.source, tok.lineno)
            if last is None or key[0] != last[0] or key[1] != last[1] + 1:
                out.append(f'#line {tok.lineno} "{tok.source}"')
            last = key
        line.append(tok.value)
    if line:
        out.append("".join(line))
    return "\n".join(out) + "\n"


_ATTR = re.compile(r"\b__attribute__\b|\b__attribute\b")


def _strip_attributes(src: str):
    """Blank out `__attribute__((...))`; packed/aligned(N) on a struct become marker
    members `char __pytrace_packed;` / `char __pytrace_aligned_N;` inside its braces."""
    inserts = []        # (position, marker)
    chars = list(src)
    for m in _ATTR.finditer(src):
        i = src.find("(", m.end())
        if i < 0 or src[m.end():i].strip():
            continue
        depth, j = 0, i
        while j < len(src):
            depth += {"(": 1, ")": -1}.get(src[j], 0)
            if depth == 0:
                break
            j += 1
        body = src[i:j + 1]
        for k in range(m.start(), min(j + 1, len(src))):
            if chars[k] != "\n":
                chars[k] = " "
        marker = _attr_marker(body)
        if marker:
            where = _attr_target(src, m.start(), j + 1)
            if where is not None:
                inserts.append((where, marker))
    for where, marker in sorted(inserts, reverse=True):
        chars.insert(where, marker)
    return "".join(chars), len(inserts)


def _attr_marker(body: str) -> str:
    marks = []
    if re.search(r"\b_*packed_*\b", body):
        marks.append("char __pytrace_packed;")
    a = re.search(r"\b_*aligned_*\b\s*(?:\(\s*(\d+)\s*\))?", body)
    if a:
        marks.append(f"char __pytrace_aligned_{a.group(1) or 16};")
    return " ".join(marks)


def _attr_target(src: str, start: int, end: int):
    """Where the marker goes: before the `}` the attribute follows, or after the `{`
    of the struct whose keyword it follows; None for other attributes."""
    before = src[:start].rstrip()
    if before.endswith("}"):
        return len(before) - 1
    if re.search(r"\b(struct|union)\s*$", before):
        brace = src.find("{", end)
        between = src[end:brace] if brace >= 0 else ";"
        if brace >= 0 and re.fullmatch(r"\s*\w*\s*", between):
            return brace + 1
    return None


# ---------------------------------------------------------------- macros

def _macros(pre) -> dict:
    """#define'd constants: name → int or str (function-like ones and those that are
    not constants left out)."""
    out = {}
    for name, m in pre.macros.items():
        if name in pre.predefined or name in ("__FILE__", "__LINE__") or m.arglist is not None:
            continue
        value = _macro_value(pre.macros, m.value, 0)
        if value is not None:
            out[name] = value
    return out


_NUM = re.compile(r"^(0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)[uUlL]*$")


def _macro_value(macros, tokens, depth):
    toks = [t for t in tokens if t.type != "CPP_WS"]
    if not toks or depth > 16:
        return None
    if all(t.type == "CPP_STRING" for t in toks) and all(t.value.startswith('"') for t in toks):
        try:
            return "".join(pyast.literal_eval(t.value) for t in toks)
        except (ValueError, SyntaxError):
            return None
    parts = []
    for t in toks:
        v = t.value
        if t.type == "CPP_ID":
            m = macros.get(v)
            if m is None or m.arglist is not None:
                return None
            inner = _macro_value(macros, m.value, depth + 1)
            if not isinstance(inner, int):
                return None
            v = str(inner)
        elif t.type == "CPP_CHAR":
            try:
                v = str(ord(pyast.literal_eval(v)))
            except (ValueError, SyntaxError, TypeError):
                return None
        elif _NUM.match(v):
            v = _NUM.match(v).group(1)
            if len(v) > 1 and v[0] == "0" and v[1].isdigit():
                v = "0o" + v[1:]
        elif v not in _OPS:
            return None
        parts.append(v)
    return _const_eval(" ".join(parts))


_OPS = {"(", ")", "+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^", "~"}


def _const_eval(expr: str):
    try:
        tree = pyast.parse(expr, mode="eval")
    except SyntaxError:
        return None
    return _eval_node(tree.body)


def _eval_node(n):
    if isinstance(n, pyast.Constant) and isinstance(n.value, int):
        return n.value
    if isinstance(n, pyast.UnaryOp):
        v = _eval_node(n.operand)
        if v is None:
            return None
        return {pyast.USub: -v, pyast.UAdd: v, pyast.Invert: ~v}.get(type(n.op))
    if isinstance(n, pyast.BinOp):
        a, b = _eval_node(n.left), _eval_node(n.right)
        if a is None or b is None:
            return None
        return _binop(type(n.op).__name__, a, b)
    return None


def _binop(op: str, a: int, b: int):
    if op in ("Div", "Mod", "FloorDiv") and b == 0:
        return None
    if op in ("Div", "FloorDiv"):
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    if op == "Mod":
        return a - b * _binop("Div", a, b)
    fns = {"Add": a + b, "Sub": a - b, "Mult": a * b, "BitAnd": a & b, "BitOr": a | b,
           "BitXor": a ^ b}
    if op in fns:
        return fns[op]
    if op in ("LShift", "RShift") and 0 <= b < 128:
        return a << b if op == "LShift" else a >> b
    return None


# ---------------------------------------------------------------- parsing

_TYPE_USE = re.compile(r"\b([A-Za-z_]\w*)(?=[\s*]+\**\s*\(?\s*\**\s*[A-Za-z_]\w*\s*[;,\[:)=])")


def _cparse(src: str, script: str, space, builder):
    """pycparser over the preprocessed text.  Type names the script uses that only the
    built-in names or the fallback know get a placeholder typedef first."""
    from pycparser import c_parser
    known = set()
    for name in set(_TYPE_USE.findall(script)):
        if name not in C_KEYWORDS and not name.startswith("__pytrace") and \
                space.lookup(name) is not None:
            known.add(name)
    builder.placeholders = known
    head = "".join(f"typedef int {n};\n" for n in sorted(known))
    text = src.replace(PRELUDE_C, PRELUDE_C + head, 1)
    parser = c_parser.CParser()
    try:
        return parser.parse(text, SCRIPT)
    except c_parser.ParseError as e:
        typedefs = {n for n, is_type in parser._scope_stack[0].items() if is_type}
        raise _parse_failure(_with_position(str(e), parser), script, typedefs) from None
    except AssertionError:          # pycparser's scope stack on an unbalanced `}`
        raise _brace_failure(script) from None


def _with_position(msg: str, parser) -> str:
    """pycparser leaves the position out of some errors: add the next token's."""
    if _WHERE.match(msg) or "At end of input" in msg:
        return msg
    try:
        stream = parser._tokens
        tok = stream.peek(1) or (stream._buffer[stream._index - 1] if stream._index else None)
        coord = parser._tok_coord(tok)
        return f"{coord.file}:{coord.line}:{coord.column}: {msg.split(': ', 1)[-1]}"
    except Exception:  # noqa: BLE001 -- private pycparser API: keep the message as it is
        return msg


_WHERE = re.compile(r"^(.*?):(\d+)(?::(\d+))?: (.*)$", re.DOTALL)


def _parse_failure(msg: str, script: str, typedefs) -> _Fail:
    m = _WHERE.match(msg)
    if not m:
        what = msg.split(": ", 1)[-1]
        unknown = _unknown_type_name(script, typedefs)
        if unknown:
            return unknown
        if what == "At end of input":
            return _end_failure(script)
        return _Fail(f"syntax error in C definitions: {what}", SCRIPT, 0)
    source, line, col, what = m.group(1), int(m.group(2)), int(m.group(3) or 1), m.group(4)
    tok = what.split("before:", 1)[1].strip() if "before:" in what else ""
    if source == SCRIPT:
        unknown = _unknown_type_name(script, typedefs, line)
        if unknown:
            return unknown
    desc = f'syntax error, unexpected "{tok}"' if tok else f"syntax error: {what}"
    return _Fail(desc, source, line, col, max(len(tok), 1))


def _end_failure(script: str) -> _Fail:
    """A declaration left open at the end of the C text: at its last character."""
    lines = script.rstrip().split("\n")
    return _Fail("syntax error, unexpected end of the C definitions", SCRIPT, len(lines),
                 max(len(lines[-1]), 1))


def _brace_failure(script: str) -> _Fail:
    depth = 0
    for lineno, line in enumerate(script.split("\n"), 1):
        for col, ch in enumerate(line, 1):
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if depth < 0:
                return _Fail('syntax error, unexpected "}"', SCRIPT, lineno, col)
    return _Fail('syntax error, unexpected "}"', SCRIPT, 0)


_QUALIFIERS = {"const", "volatile", "restrict", "static", "extern", "typedef", "register",
               "inline", "__restrict"}


def _unknown_type_name(script: str, typedefs, line_no: int = 0):
    """The first identifier used as a type name that is not a typedef → _Fail (on line
    `line_no` only, if given)."""
    for lineno, line in enumerate(script.split("\n"), 1):
        if line_no and lineno != line_no:
            continue
        for m in _TYPE_USE.finditer(line):
            name = m.group(1)
            before = line[:m.start()].rstrip()
            prev = re.search(r"(\w+)$", before)
            if name in C_KEYWORDS or name in typedefs or \
                    (prev and prev.group(1) not in _QUALIFIERS):
                continue
            return _Fail(f'Cannot resolve unknown type "{name}"', SCRIPT, lineno,
                         m.start() + 1, len(name))
    return None


# ---------------------------------------------------------------- locating errors

def _path(source: str) -> str:
    return source if source.startswith("<") else os.path.abspath(source)


def _located(e: _Fail, script: str, pre) -> CompileError:
    source, line, col, length = e.source, e.line, e.col, e.length
    message = e.message
    seen = 0
    while source not in (SCRIPT, None) and pre is not None and seen < 64:
        parent = pre.parents.get(source) or pre.parents.get(os.path.abspath(source))
        if parent is None:
            break
        if seen == 0 and line:
            message = f"{_path(source)}:{line}: {message}"
        source, line = parent
        col, length = 0, 0
        seen += 1
    lines = script.split("\n")
    if source != SCRIPT or not 1 <= line <= len(lines):
        if seen == 0 and source not in (SCRIPT, None) and line:
            message = f"{_path(source)}:{line}: {message}"
        return error(message, Span(0, 0, 0, 0))
    text = lines[line - 1]
    if col <= 0:            # the whole directive line
        col = len(text) - len(text.lstrip()) + 1
        length = max(len(text.rstrip()) - col + 1, 1)
    return error(message, Span(line, col, line, col + max(length, 1)))


# ---------------------------------------------------------------- pycparser tree → types

class _Builder:
    """Walks pycparser's tree, defining every struct/union/enum/typedef in `space`."""

    def __init__(self, space, script: str):
        self.space = space
        self.script = script
        self.enums = {}
        self.placeholders = set()
        self.script_defs = set()

    def build(self, tree) -> None:
        from pycparser import c_ast
        self.c = c_ast
        for node in tree.ext:
            in_script = node.coord is not None and node.coord.file == SCRIPT
            if isinstance(node, c_ast.FuncDef):
                if in_script:
                    raise self.fail("function definitions are not supported here", node)
                continue
            if isinstance(node, c_ast.Typedef):
                self.typedef(node)
            elif isinstance(node, c_ast.Decl):
                self.declaration(node, in_script)

    def fail(self, message, node, length=1) -> _Fail:
        coord = getattr(node, "coord", None)
        if coord is None:
            return _Fail(message, SCRIPT, 0)
        return _Fail(message, coord.file, coord.line or 0, coord.column or 1, length)

    def typedef(self, node) -> None:
        if node.coord is not None and node.coord.file == PRELUDE_FILE and \
                (node.name in self.placeholders or node.name.startswith("__pytrace")):
            if node.name == "__pytrace_va_list":
                self.space.define(node.name, self.type_of(node.type))
            elif node.name == "__pytrace_int128":
                self.space.define(node.name, M.BUILTINS["__int128"])
            return
        self.space.define(node.name, self.type_of(node.type))

    def declaration(self, node, in_script: bool) -> None:
        c = self.c
        t = node.type
        if isinstance(t, c.FuncDecl) or (isinstance(t, c.TypeDecl) and node.name and
                                          not in_script):
            if isinstance(t, c.TypeDecl) and isinstance(t.type, (c.Struct, c.Union, c.Enum)):
                self.type_of(t)
            return
        if isinstance(t, (c.Struct, c.Union)) and t.decls is None:
            return                               # a forward declaration
        self.type_of(t)

    # ------------------------------------------------------------ types
    def type_of(self, node):
        c = self.c
        if isinstance(node, (c.TypeDecl, c.Typename)):
            return self.type_of(node.type)
        if isinstance(node, c.IdentifierType):
            return self.named(node)
        if isinstance(node, (c.Struct, c.Union)):
            return self.record(node)
        if isinstance(node, c.Enum):
            return self.enum(node)
        if isinstance(node, c.PtrDecl):
            target = self.type_of(node.type)
            if isinstance(target, M.CRecord) and target.name:
                target = M.CRef(target.kind, target.name)
            return M.CPointer(target)
        if isinstance(node, c.ArrayDecl):
            elem = self.type_of(node.type)
            count = self.const(node.dim) if node.dim is not None else 0
            if count < 0:
                raise self.fail("array has a negative size", node.dim)
            return M.CArray(elem, count)
        if isinstance(node, c.FuncDecl):
            return M.CFunc()
        raise self.fail(f"unsupported C construct: {type(node).__name__}", node)

    def named(self, node):
        names = [n for n in node.names if n not in ("signed", "unsigned")] or ["int"]
        t = M.int_type(node.names)
        if t is None and len(names) == 1:
            t = self.space.lookup(names[0])
        if t is None:
            name = " ".join(node.names)
            raise self.fail(f'Cannot resolve unknown type "{name}"', node, len(name))
        return t

    def complete(self, t, node):
        """A type usable by value: CRefs resolved to complete definitions."""
        if isinstance(t, M.CArray):
            return M.CArray(self.complete(t.elem, node), t.count)
        if isinstance(t, M.CRef):
            found = self.space.lookup(f"{t.kind} {t.name}")
            if found is None or (isinstance(found, M.CRecord) and not found.complete):
                raise self.unknown(t, node)
            return found
        if isinstance(t, M.CRecord) and not t.complete:
            raise self.unknown(t, node)
        return t

    def unknown(self, t, node) -> _Fail:
        """`Cannot resolve unknown type "struct X"`, spanning `struct X` in the script
        (pycparser places a struct's name, not its keyword)."""
        name = f"{t.kind} {t.name}"
        e = self.fail(f'Cannot resolve unknown type "{name}"', node, len(name))
        lines = self.script.split("\n")
        if e.source == SCRIPT and 1 <= e.line <= len(lines):
            start = lines[e.line - 1].rfind(t.kind, 0, e.col)
            if start >= 0:
                e.col = start + 1
        return e

    def record(self, node):
        kind = "union" if isinstance(node, self.c.Union) else "struct"
        name = node.name or ""
        if node.decls is None:
            return M.CRef(kind, name)
        fields, packed, aligned = [], False, 0
        for d in node.decls:
            if d.name and d.name.startswith("__pytrace_"):
                packed = packed or d.name == "__pytrace_packed"
                if d.name.startswith("__pytrace_aligned_"):
                    aligned = max(aligned, int(d.name.rsplit("_", 1)[1]))
                continue
            field = self.member(d)
            if field is not None:
                fields.append(field)
        rec = M.layout(kind, name, fields, packed, aligned)
        if name:
            self.define_record(node, f"{kind} {name}", rec)
        return rec

    def define_record(self, node, key, rec) -> None:
        in_script = node.coord is not None and node.coord.file == SCRIPT
        if in_script and key in self.script_defs and self.space.types.get(key) != rec:
            raise self.fail(f"redefinition of '{key}'", node, len(key))
        if in_script:
            self.script_defs.add(key)
        self.space.define(key, rec)

    def member(self, d):
        """A member declaration → (name, type, bits) for layout, or None."""
        c = self.c
        t = d.type
        if d.name is None and isinstance(t, (c.Struct, c.Union)) and t.name:
            self.type_of(t)                      # `struct B {...};` inside: not a member
            return None
        if isinstance(t, c.Enum) and d.name is None:
            self.type_of(t)
            return None
        mtype = self.complete(self.type_of(t), self.type_node(d))
        if isinstance(mtype, (M.CFunc, M.CVoid)):
            raise self.fail(f"member '{d.name}' has an unsupported type", d)
        bits = None
        if d.bitsize is not None:
            bits = self.const(d.bitsize)
            if not isinstance(mtype, (M.CInt, M.CEnum)):
                raise self.fail(f"bit-field '{d.name}' has an invalid type", d)
            if bits < 0 or bits > M.sizeof(mtype) * 8 or (bits == 0 and d.name):
                raise self.fail(f"invalid width of bit-field '{d.name or ''}'", d.bitsize)
        for a in d.align or ():
            if d.name:
                raise self.fail("_Alignas on a member is not supported", d)
        return (d.name or "", mtype, bits)

    def type_node(self, d):
        """The node naming a declaration's base type (for error positions)."""
        n = d.type
        while hasattr(n, "type") and not isinstance(n, (self.c.Struct, self.c.Union)):
            n = n.type
        return n

    def enum(self, node):
        name = node.name or ""
        if node.values is None:
            found = self.space.lookup(f"enum {name}")
            return found if found is not None else M.CEnum(name)
        values, nxt = [], 0
        for e in node.values.enumerators:
            v = self.const(e.value) if e.value is not None else nxt
            values.append((e.name, v))
            self.enums[e.name] = v
            nxt = v + 1
        lo = min((v for _, v in values), default=0)
        hi = max((v for _, v in values), default=0)
        if lo >= 0:
            size, signed = (4, False) if hi < 1 << 32 else (8, False)
        else:
            size, signed = (4, True) if lo >= -(1 << 31) and hi < 1 << 31 else (8, True)
        t = M.CEnum(name, size, signed, tuple(values))
        if name:
            self.space.define(f"enum {name}", t)
        return t

    # ------------------------------------------------------------ constants
    def const(self, node) -> int:
        v = self.value(node)
        if not isinstance(v, int):
            raise self.fail("expected an integer constant expression", node)
        return v

    def value(self, node):
        c = self.c
        if isinstance(node, c.Constant):
            return _c_literal(node.value)
        if isinstance(node, c.ID):
            if node.name in self.enums:
                return self.enums[node.name]
            if node.name == "*":
                raise self.fail("variable length arrays are not supported", node)
            raise self.fail(f"unknown identifier '{node.name}'", node, len(node.name))
        if isinstance(node, c.UnaryOp):
            return self.unary(node)
        if isinstance(node, c.BinaryOp):
            return self.binary(node)
        if isinstance(node, c.TernaryOp):
            return self.value(node.iftrue) if self.const(node.cond) else self.value(node.iffalse)
        if isinstance(node, c.Cast):
            return self.value(node.expr)
        raise self.fail("expected an integer constant expression", node)

    def unary(self, node):
        op = node.op
        if op in ("sizeof", "_Alignof"):
            if not isinstance(node.expr, self.c.Typename):
                raise self.fail(f"{op} of an expression is not supported here", node)
            t = self.complete(self.type_of(node.expr), node)
            return M.sizeof(t) if op == "sizeof" else M.alignof(t)
        v = self.const(node.expr)
        ops = {"-": -v, "+": v, "~": ~v, "!": int(not v)}
        if op not in ops:
            raise self.fail(f"unsupported operator '{op}' in a constant", node)
        return ops[op]

    def binary(self, node):
        a, b = self.const(node.left), self.const(node.right)
        cmp = {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b, "==": a == b,
               "!=": a != b, "&&": bool(a and b), "||": bool(a or b)}
        if node.op in cmp:
            return int(cmp[node.op])
        names = {"+": "Add", "-": "Sub", "*": "Mult", "/": "Div", "%": "Mod", "<<": "LShift",
                 ">>": "RShift", "&": "BitAnd", "|": "BitOr", "^": "BitXor"}
        v = _binop(names.get(node.op, "?"), a, b)
        if v is None:
            raise self.fail(f"cannot evaluate '{node.op}' in a constant", node)
        return v


def _c_literal(text: str):
    """A C integer or character literal → int (None for others)."""
    if text.startswith("'"):
        try:
            return ord(pyast.literal_eval(text))
        except (ValueError, SyntaxError, TypeError):
            return None
    m = _NUM.match(text)
    if not m:
        return None
    v = m.group(1)
    if len(v) > 1 and v[0] == "0" and v[1].isdigit():
        return int(v, 8)
    return int(v, 0)

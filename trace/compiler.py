"""The compiler pipeline: source → AST → passes → LLVM IR → BPF ELF object.

The pipeline is one literal list of named passes; `--dump-after NAME` prints
the AST after that pass.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable

from .language import ast
from .language.diagnostics import Diagnostic, error, render
from .language.parser import parse
from .passes import desugar, fold, resources, typecheck
from .passes.typecheck import Options
from .passes.units import build_units
from .runtime.manifest import MANIFEST_VERSION, Manifest
from .runtime.record import field, record
from .types.cdecl import Declarations
from .types.model import AggT, packed


@record
class CompileOptions(Options):
    params: list[str] = field(default_factory=list)
    max_map_keys: int = 4096
    dump_after: str | None = None
    pid: int | None = None       # -p: user-space probes (uprobe, usdt) trace only this process
    command: str | None = None   # -c: the command (watchpoint:func+argN probes its binary)
    dump: Callable[[str], None] = print
    emitter: object = None          # a codegen.emit.BackgroundEmitter, else emit in-process
    helper_errors: int = 0          # -k: 1 warns when map updates/deletes fail, -kk: 2 also reads
    include_dirs: list[str] = field(default_factory=list)   # -I DIR
    includes: list[str] = field(default_factory=list)       # --include FILE
    literals: object = None         # cache.Literals: literals the object cache may supply


@record
class State:
    source: str
    filename: str
    options: CompileOptions
    program: ast.Program | None = None
    units: list = field(default_factory=list)
    structs: object = None          # the C declarations (types/cdecl.Declarations)
    resources: object = None        # passes/resources.Resources
    maps: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    llvm_ir: str = ""
    elf: bytes = b""
    literals: list = field(default_factory=list)    # ast.Literal, by cache.Literals index


def parse_pass(st: State):
    st.program = parse(st.source, st.filename)
    if st.options.emitter is not None:      # it parses: a large one's second LLVM worker
        st.options.emitter.expect(len(st.source))
    if st.options.literals is not None and not st.options.helper_errors:
        # (-k's messages quote the source: its literals stay in the key)
        mark_literals(st)


def mark_literals(st: State):
    """The Integer nodes parsed from the literals cache.Literals found: ast.Literal."""
    where = {span: i for i, span in enumerate(st.options.literals.spans)}
    st.literals = [ast.Literal(i) for i in range(len(where))]
    for node in ast.walk(st.program):
        if isinstance(node, ast.Integer) and node.span.line == node.span.end_line:
            i = where.get((node.span.line, node.span.col, node.span.end_col))
            if i is not None:
                node.literal = st.literals[i]


def lifted_literals(st: State) -> set:
    """The literals a cached object of this shape takes at load time: those lowered
    from `.rodata` and never read by a pass (none if there are warnings: they
    quote the source)."""
    if st.warnings:
        return set()
    return {lit.index for lit in st.literals if lit.lowered and not lit.read}


def desugar_pass(st: State):
    desugar.filters_to_if(st.program)
    desugar.positional_params(st.program, st.options.params)


def units_pass(st: State):
    st.units = build_units(st.program, st.options, st.warnings)


def declarations_pass(st: State):
    """The C declarations before the probes: types, sizes, #defines and enums (a
    missing #include is a located error, as the issue and 0.17 have it)."""
    program = st.program
    st.structs = Declarations.parse(program.c_definitions, program.c_positions,
                                    st.options.include_dirs, st.options.includes)
    st.warnings.extend(st.structs.warnings)


def fold_pass(st: State):
    fold.fold(st.units, st.structs)


def typecheck_pass(st: State):
    st.maps, warnings = typecheck.check(st.units, st.options, st.structs)
    st.warnings.extend(warnings)


def resources_pass(st: State):
    st.resources = resources.allocate(st)


INTERNAL_ROLES = ("ringbuf", "globals")     # the runtime's own maps (its counters: .data)


def map_manifest(info) -> dict:
    keys = info.keys or []
    names = info.key_names or [None] * len(keys)
    fields = [{"offset": off, "type": k.descriptor(), **({"name": n} if n else {})}
              for off, k, n in zip(packed(keys)[0], keys, names)]
    entry = {"name": info.name, "symbol": info.symbol, "kind": info.kind, "percpu": info.percpu,
             "key": {"size": info.user_key_size, "fields": fields},
             "value_size": info.value_size, "full_slot": info.full_slot}
    if isinstance(info.value, AggT):
        entry["value"] = {"kind": "int", "signed": info.value.signed}
        if info.value.lhist:
            lo, hi, step = info.value.lhist
            entry["lhist"] = {"min": lo, "max": hi, "step": step}
    else:
        entry["value"] = info.value.descriptor()
    return entry


def codegen_pass(st: State):
    # lazy: start-up time (llvmlite only once the program checks)
    from .codegen import builder as B
    from .codegen.lower import Lowerer
    from .runtime.objfile import DATA_SECTION
    module = B.new_module()
    res = st.resources
    for info in st.maps.values():
        info.gv = B.add_map(module, info.symbol, info.map_type, info.kernel_key_size,
                            info.value_size, info.max_entries)
    gvs = {role: B.add_map(module, m.symbol, m.map_type, m.key_size, m.value_size, m.max_entries)
           for role, m in res.internal.items()}
    internal = {role: m.symbol for role, m in res.internal.items() if role in INTERNAL_ROLES}
    gvs["counters"] = B.add_data(module, "pytrace_counters", DATA_SECTION, res.counters)
    internal["lost"] = DATA_SECTION
    if st.maps:
        internal["full"] = DATA_SECTION
    programs = []
    for unit in st.units:
        Lowerer(module, unit, st.maps, res, gvs, st.options).run()
        first = unit.probe.attach_points[0].span
        attach = unit.provider.attach_specs(unit.probes, unit.cookies)
        wildcard = {n for ap in unit.probe.attach_points if "*" in ap.raw for n in ap.expanded or ()}
        for spec in attach:         # a wildcard's expansion that can't attach is skipped
            spec.optional = (len(attach) == len(unit.probes)     # (an entry for each probe)
                             and st.manifest["probes"][spec.cookie] in wildcard)
        if st.options.pid is not None:
            for spec in attach:
                spec.for_process(st.options.pid)
        programs.append({
            "symbol": unit.symbol, "section": unit.section, "prog_type": unit.provider.prog_type,
            "name": resources.kernel_name(_program_name(unit)),
            "attach": [spec.to_json() for spec in attach],
            "span": [unit.probe.span.line, unit.probe.span.col, first.end_line, first.end_col],
        })
        programs[-1].update(unit.provider.program_fields(unit.probes))   # kfunc, iter: attach BTF
    for action in res.actions:
        if action["kind"] == "helper_error":
            span = action.pop("span")
            action["message"] = _helper_error_message(st, span, action["helper"])
            action["line"], action["col"] = span[0], span[1]
    st.manifest.update({
        "version": MANIFEST_VERSION,
        "programs": programs,
        "maps": [map_manifest(m) for m in sorted(st.maps.values(), key=lambda m: m.name.encode())],
        "internal": internal,
        "globals": dict(resources.GLOBALS),
        "async": res.actions,
    })
    B.add_section_bytes(module, "_license", "license", b"GPL\0")
    # written through the runtime's typed records: the contract is declared once, there
    contract = Manifest.from_json(st.manifest).to_json()
    B.add_section_bytes(module, "_manifest", ".pytrace",
                        json.dumps(contract, separators=(",", ":")).encode())
    st.manifest = contract      # what the object says (the session needn't decode it)
    st.llvm_ir = str(module)


def _helper_error_message(st: State, span, helper: str):
    """The warning a failing helper prints, as [before, after] the error it got
    ("Argument list too long (-7)"): the runtime has neither source nor renderer."""
    marker = "\0"
    text = render(Diagnostic(f"Failed to {helper}: {marker}", ast.Span(*span), "WARNING"),
                  st.source, st.filename)
    return text.split(marker, 1)


def _program_name(unit) -> str:
    p = unit.probes[0]
    if p.name in ("BEGIN", "END"):
        return p.name
    return (p.func or p.target or p.name.split(":")[0])


def emit_pass(st: State):
    if st.options.emitter is not None:
        emit_object = st.options.emitter.emit
    else:
        from .codegen.emit import emit_object   # lazy: start-up time (llvmlite)
    try:
        st.elf = emit_object(st.llvm_ir)
    except RuntimeError as e:
        text = " ".join(str(e).split())
        span = st.program.probes[0].span if st.program and st.program.probes else None
        function = re.search(r"in function (\S+)", text)
        for unit in st.units:
            if function and unit.symbol == function.group(1):
                span = unit.probe.span
        if "stack limit" in text:
            text = "the program needs more than the 512 bytes of BPF stack (too many large values live at once)"
        raise error(f"LLVM could not compile the program: {text}", span) from None


PIPELINE = [
    ("parse", parse_pass),
    ("desugar", desugar_pass),
    ("units", units_pass),
    ("declarations", declarations_pass),
    ("fold", fold_pass),
    ("typecheck", typecheck_pass),
    ("resources", resources_pass),
    ("codegen", codegen_pass),
    ("emit", emit_pass),
]
PASS_NAMES = [name for name, _ in PIPELINE]


def compile_source(source: str, filename: str, options: CompileOptions) -> State:
    st = State(source, filename, options)
    for name, run in PIPELINE:
        run(st)
        if options.dump_after == name:
            if name in ("codegen", "emit"):
                options.dump(st.llvm_ir)
            elif st.program is not None:
                options.dump(ast.dump(st.program))
            break
    return st

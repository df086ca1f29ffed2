"""Test helper: build BPF ELF objects from hand-written LLVM IR with llvmlite.

    obj = build_module(functions=IR, maps=[Map("map_c", 6, 4, 8, 1)],
                       manifest={...})

``functions`` is LLVM IR text (opaque pointers, ``ptr``) defining the
program functions, e.g. ``define i64 @prog_0(ptr %ctx) #0 section "..."``;
``#0`` is declared as ``nounwind``.  Helpers are called as
``call i64 inttoptr (i64 ID to ptr)(...)``.
"""

import json
from dataclasses import dataclass

DATALAYOUT = "e-m:e-p:64:64-i64:64-i128:128-n32:64-S128"
TRIPLE = "bpfel"

_tm = None


def _target_machine():
    global _tm
    if _tm is None:
        import llvmlite.binding as llvm
        try:
            llvm.initialize()
        except RuntimeError:
            pass  # llvmlite >= 0.45 initializes itself
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        target = llvm.Target.from_triple(TRIPLE)
        _tm = target.create_target_machine(cpu="v3", opt=2)
    return _tm


def compile_ir(ir: str) -> bytes:
    """LLVM IR text → BPF ELF object bytes (O2, cpu v3)."""
    import llvmlite.binding as llvm
    tm = _target_machine()
    mod = llvm.parse_assembly(ir)
    mod.verify()
    try:
        pto = llvm.create_pipeline_tuning_options(speed_level=2)
        pb = llvm.create_pass_builder(tm, pto)
        pm = pb.getModulePassManager()
        pm.run(mod, pb)
    except AttributeError:  # older llvmlite
        pmb = llvm.PassManagerBuilder()
        pmb.opt_level = 2
        pm = llvm.ModulePassManager()
        pmb.populate(pm)
        pm.run(mod)
    return tm.emit_object(mod)


@dataclass
class Map:
    symbol: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0


def _cstring(data: bytes) -> str:
    out = []
    for b in data:
        c = chr(b)
        if 0x20 <= b < 0x7F and c not in '"\\':
            out.append(c)
        else:
            out.append(f"\\{b:02X}")
    return "".join(out)


def module_ir(functions: str, maps=(), manifest=None, license="GPL",
              extra_globals: str = "") -> str:
    lines = [f'target datalayout = "{DATALAYOUT}"', f'target triple = "{TRIPLE}"', ""]
    for m in maps:
        lines.append(
            f"@{m.symbol} = global {{ i32, i32, i32, i32, i32 }} "
            f"{{ i32 {m.type}, i32 {m.key_size}, i32 {m.value_size}, "
            f"i32 {m.max_entries}, i32 {m.flags} }}, section \"maps\", align 4")
    lic = license.encode() + b"\0"
    lines.append(f'@_license = global [{len(lic)} x i8] c"{_cstring(lic)}", '
                 f'section "license", align 1')
    if manifest is not None:
        js = json.dumps(manifest).encode()
        lines.append(f'@_pytrace_manifest = global [{len(js)} x i8] c"{_cstring(js)}", '
                     f'section ".pytrace", align 1')
    if extra_globals:
        lines.append(extra_globals)
    lines.append("")
    lines.append(functions)
    lines.append("")
    lines.append("attributes #0 = { nounwind }")
    return "\n".join(lines) + "\n"


def build_module(functions: str, maps=(), manifest=None, license="GPL",
                 extra_globals: str = "") -> bytes:
    return compile_ir(module_ir(functions, maps, manifest, license, extra_globals))


# ---------------------------------------------------------------- IR snippets
# Each snippet is (entry-block allocas, body); names are made unique with
# ``tag``; a body ends in the middle of a basic block labelled ``cont``.

def ir_increment(map_sym: str, key_i32: str, tag: str, cont: str):
    """*lookup(map, key) += 1 (null-checked), then continue at ``cont``."""
    return (f"""
  %k_{tag} = alloca i32, align 4""", f"""
  store i32 {key_i32}, ptr %k_{tag}
  %v_{tag} = call ptr inttoptr (i64 1 to ptr)(ptr @{map_sym}, ptr %k_{tag})
  %n_{tag} = icmp eq ptr %v_{tag}, null
  br i1 %n_{tag}, label %{cont}, label %inc_{tag}
inc_{tag}:
  %o_{tag} = load i64, ptr %v_{tag}
  %a_{tag} = add i64 %o_{tag}, 1
  store i64 %a_{tag}, ptr %v_{tag}
  br label %{cont}
{cont}:""")


def ir_emit(rb_sym: str, aid: int, val: str, tag: str, lost_sym: str = None):
    """ringbuf_output({u64 aid; u64 val}); count a failure in ``lost_sym``."""
    allocas = f"""
  %r_{tag} = alloca [2 x i64], align 8"""
    body = f"""
  store i64 {aid}, ptr %r_{tag}
  %p_{tag} = getelementptr i64, ptr %r_{tag}, i64 1
  store i64 {val}, ptr %p_{tag}
  %x_{tag} = call i64 inttoptr (i64 130 to ptr)(ptr @{rb_sym}, ptr %r_{tag}, i64 16, i64 0)"""
    if lost_sym:
        la, lb = ir_increment(lost_sym, "0", f"l{tag}", f"ok_{tag}")
        allocas += la
        body += f"""
  %f_{tag} = icmp ne i64 %x_{tag}, 0
  br i1 %f_{tag}, label %lost_{tag}, label %ok_{tag}
lost_{tag}:""" + lb
    return allocas, body


def ir_function(name: str, section: str, *snippets, ret: str = "0") -> str:
    """A program function from snippets ((allocas, body) pairs or body text)."""
    allocas, bodies = [], []
    for sn in snippets:
        if isinstance(sn, str):
            bodies.append(sn)
        else:
            allocas.append(sn[0])
            bodies.append(sn[1])
    return (f'define i64 @{name}(ptr %ctx) #0 section "{section}" {{\n'
            f'entry:{"".join(allocas)}\n  br label %start_\nstart_:'
            f'{"".join(bodies)}\n  ret i64 {ret}\n}}\n')

"""LLVM IR text → optimised BPF ELF object bytes."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def _target_machine():
    import llvmlite.binding as llvm
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    target = llvm.Target.from_triple("bpfel")
    return target.create_target_machine(cpu="v3", opt=2, reloc="static", codemodel="small")


def emit_object(llvm_ir: str) -> bytes:
    import llvmlite.binding as llvm
    tm = _target_machine()
    mod = llvm.parse_assembly(llvm_ir)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=2)
    pb = llvm.create_pass_builder(tm, pto)
    pm = pb.getModulePassManager()
    pm.run(mod, pb)
    return tm.emit_object(mod)

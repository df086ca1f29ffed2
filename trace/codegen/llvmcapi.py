"""LLVM IR text -> BPF object through llvmlite's shared library, called with ctypes.

`import llvmlite.binding` costs 30-45 ms (twenty-odd modules, enum, threading,
importlib.resources, and a ctypes prototype for each of its ~600 functions);
loading its library and declaring the twenty functions the emitter calls costs
~6 ms.  That import was the forked LLVM worker's critical path on a program never
seen before (docs/performance.md).

The library's LLVMPY_* functions are llvmlite's private C API, which changes
between releases: `load()` uses them only for the llvmlite versions in TESTED
(tests/test_llvmcapi.py checks that they compile what llvmlite.binding compiles,
byte for byte), and returns None otherwise, for the emitter to use llvmlite.binding.
"""
from __future__ import annotations

import ctypes
import os
import sys
from ctypes import POINTER, byref, c_bool, c_char_p, c_int, c_size_t, c_void_p

TESTED = ("0.50.",)

# emit.PASSES's names -> the library's functions that add them to a module pass manager
_ADD_PASS = {
    "sroa": "LLVMPY_module_AddSROAPass",
    "simplify_cfg": "LLVMPY_module_AddSimplifyCFGPass",
    "instruction_combine": "LLVMPY_module_AddInstCombinePass",
    "dead_store_elimination": "LLVMPY_module_AddDSEPass",
}

_OUT = POINTER(c_void_p)        # a char ** the library fills with a string we dispose
_PROTOTYPES = {                 # name: (result, *arguments); handles are void *
    "LLVMPY_InitializeAllTargetInfos": (None,),
    "LLVMPY_InitializeAllTargets": (None,),
    "LLVMPY_InitializeAllTargetMCs": (None,),
    "LLVMPY_InitializeAllAsmPrinters": (None,),
    "LLVMPY_GetTargetFromTriple": (c_void_p, c_char_p, _OUT),
    # target, triple, cpu, features, opt level, reloc, code model, printmc, jit, abi name
    "LLVMPY_CreateTargetMachine": (c_void_p, c_void_p, c_char_p, c_char_p, c_char_p, c_int,
                                   c_char_p, c_char_p, c_int, c_int, c_char_p),
    "LLVMPY_GetGlobalContext": (c_void_p,),
    "LLVMPY_ParseAssembly": (c_void_p, c_void_p, c_char_p, _OUT),
    "LLVMPY_VerifyModule": (c_bool, c_void_p, _OUT),
    "LLVMPY_DisposeModule": (None, c_void_p),
    "LLVMPY_CreatePipelineTuningOptions": (c_void_p,),
    "LLVMPY_DisposePipelineTuningOptions": (None, c_void_p),
    "LLVMPY_CreatePassBuilder": (c_void_p, c_void_p, c_void_p),
    "LLVMPY_DisposePassBuilder": (None, c_void_p),
    "LLVMPY_CreateNewModulePassManager": (c_void_p,),
    "LLVMPY_RunNewModulePassManager": (None, c_void_p, c_void_p, c_void_p),
    "LLVMPY_DisposeNewModulePassManger": (None, c_void_p),     # (sic)
    "LLVMPY_TargetMachineEmitToMemory": (c_void_p, c_void_p, c_void_p, c_int, _OUT),
    "LLVMPY_GetBufferStart": (c_void_p, c_void_p),
    "LLVMPY_GetBufferSize": (c_size_t, c_void_p),
    "LLVMPY_DisposeMemoryBuffer": (None, c_void_p),
    "LLVMPY_DisposeString": (None, c_void_p),
    **{name: (None, c_void_p) for name in _ADD_PASS.values()},
}


def _library_path() -> str | None:
    """llvmlite's library, if the installed llvmlite is a TESTED version."""
    for directory in sys.path:
        package = os.path.join(directory or ".", "llvmlite")
        try:
            with open(os.path.join(package, "_version.py")) as f:
                text = f.read()
        except OSError:
            continue
        version = text.partition("version_version = '")[2].partition("'")[0]
        library = os.path.join(package, "binding", "libllvmlite.so")
        if version.startswith(TESTED) and os.path.exists(library):
            return library
        return None         # the llvmlite Python imports: another version
    return None


class Llvm:
    """The target machine (emit.TARGET), and `compile(ir, passes)` -> the object's bytes."""

    def __init__(self, library: str, target: dict):
        lib = ctypes.CDLL(library)
        for name, (result, *arguments) in _PROTOTYPES.items():
            function = getattr(lib, name)
            function.restype, function.argtypes = result, arguments
        self._lib = lib
        for name in ("TargetInfos", "Targets", "TargetMCs", "AsmPrinters"):
            getattr(lib, f"LLVMPY_InitializeAll{name}")()
        triple = target["triple"].encode()
        self._tm = lib.LLVMPY_CreateTargetMachine(
            self._call_out(lib.LLVMPY_GetTargetFromTriple, triple), triple,
            target["cpu"].encode(), b"", target["opt"], target["reloc"].encode(),
            target["codemodel"].encode(), 0, 0, b"")
        if not self._tm:
            raise RuntimeError("Cannot create target machine")

    def _call_out(self, function, *arguments, failed=lambda result: not result, prefix=""):
        """Call a function whose last argument receives a message (which we free);
        raise it if the result says the call failed."""
        message = c_void_p()
        result = function(*arguments, byref(message))
        text = ""
        if message.value:
            text = ctypes.string_at(message.value).decode(errors="replace")
            self._lib.LLVMPY_DisposeString(message)
        if failed(result):
            raise RuntimeError(prefix + text)
        return result

    def compile(self, llvm_ir: str, passes) -> bytes:
        """Raises RuntimeError with LLVM's message, as llvmlite.binding does."""
        lib = self._lib
        module = self._call_out(lib.LLVMPY_ParseAssembly, lib.LLVMPY_GetGlobalContext(),
                                llvm_ir.encode(), prefix="LLVM IR parsing error\n")
        try:
            self._call_out(lib.LLVMPY_VerifyModule, module, failed=bool)
            self._optimise(module, passes)
            buffer = self._call_out(lib.LLVMPY_TargetMachineEmitToMemory, self._tm, module, 1)
        finally:
            lib.LLVMPY_DisposeModule(module)
        try:
            return ctypes.string_at(lib.LLVMPY_GetBufferStart(buffer),
                                    lib.LLVMPY_GetBufferSize(buffer))
        finally:
            lib.LLVMPY_DisposeMemoryBuffer(buffer)

    def _optimise(self, module, passes):
        lib = self._lib
        tuning = lib.LLVMPY_CreatePipelineTuningOptions()
        builder = lib.LLVMPY_CreatePassBuilder(self._tm, tuning)
        manager = lib.LLVMPY_CreateNewModulePassManager()
        try:
            for name in passes:
                getattr(lib, _ADD_PASS[name])(manager)
            lib.LLVMPY_RunNewModulePassManager(manager, module, builder)
        finally:
            lib.LLVMPY_DisposeNewModulePassManger(manager)
            lib.LLVMPY_DisposePassBuilder(builder)
            lib.LLVMPY_DisposePipelineTuningOptions(tuning)


def load(target: dict) -> Llvm | None:
    """LLVM through the library with `target`'s machine (triple, cpu, opt, reloc,
    codemodel), or None if this llvmlite's C API is not a TESTED one."""
    library = _library_path()
    return Llvm(library, target) if library is not None else None

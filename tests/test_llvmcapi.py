"""llvmcapi, LLVM through llvmlite's library with ctypes: the objects and errors that
llvmlite.binding gives, for every golden script's IR."""
import pathlib

import pytest

from pytrace.codegen import emit, llvmcapi

GOLDEN = pathlib.Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def both():
    capi = llvmcapi.load(emit.TARGET)
    if capi is None:
        pytest.skip("this llvmlite is not a version llvmcapi was tested with")
    return capi, emit._Binding()


def golden_ir():
    import shlex

    from pytrace.compiler import CompileOptions, compile_source
    for script in sorted(GOLDEN.glob("*/script.pt")):
        dumped = []
        posargs = script.parent / "posargs"
        params = shlex.split(posargs.read_text()) if posargs.exists() else ["1", "2", "3"]
        options = CompileOptions(dump_after="codegen", dump=dumped.append, has_child=True,
                                 params=params, unsafe=True)
        try:
            compile_source(script.read_text(), str(script), options)
        except Exception:       # a script that needs its arguments, or errs on purpose
            continue
        yield script.parent.name, dumped[0]


def test_the_installed_llvmlite_is_a_tested_one():
    # If this fails, llvmlite changed: test llvmcapi with it and add it to TESTED.
    assert llvmcapi.load(emit.TARGET) is not None


def test_every_golden_object_is_the_one_llvmlite_binding_emits(both):
    capi, binding = both
    compared = 0
    for name, llvm_ir in golden_ir():
        assert capi.compile(llvm_ir, emit.PASSES) == binding.compile(llvm_ir, emit.PASSES), name
        compared += 1
    assert compared >= 80      # (the rest need a -c command, or fail on purpose)


def messages(llvms, llvm_ir):
    said = []
    for llvm in llvms:
        with pytest.raises(RuntimeError) as e:
            llvm.compile(llvm_ir, emit.PASSES)
        said.append(str(e.value))
    assert said[0] == said[1]
    return said[0]


@pytest.mark.parametrize("bad, message", [
    ("ret i64 %nowhere", "LLVM IR parsing error\n<string>:16:11: error: use of undefined value"),
    ("ret i32 7", "LLVM IR parsing error\n<string>:16:7: error: value doesn't match"),
])
def test_rejected_ir_raises_what_llvmlite_binding_raises(both, bad, message):
    assert messages(both, emit._WARM_UP_IR.replace("ret i64 0", bad)).startswith(message)


def test_an_invalid_module_raises_the_verifiers_message(both):
    # it parses, but uses a value before the block that defines it
    llvm_ir = emit._WARM_UP_IR.replace("(ptr @m, ptr %k)", "(ptr @m, i64 %y)")
    assert "Instruction does not dominate" in messages(both, llvm_ir)

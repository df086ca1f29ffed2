"""The text IR layer (pytrace.codegen.llir): what it prints, and that LLVM takes it."""
import pytest

from pytrace.codegen import llir as ir

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.I64


def new_function(name="f"):
    m = ir.Module("t")
    m.triple = "bpfel"
    fn = ir.Function(m, ir.FunctionType(I64, [ir.PTR]), name)
    fn.section = "tracepoint/x/y"
    fn.attributes.add("nounwind")
    return m, fn


def test_labels_are_unique_and_do_not_grow():
    _, fn = new_function()
    names = [fn.append_basic_block(n).name for n in ("endif", "endif", "endif.1", "endif", "", "")]
    assert names == ["endif", "endif.1", "endif.1.1", "endif.2", "b", "b.1"]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    for _ in range(300):                     # nested ifs: labels stay short
        with b.if_then(b.icmp_unsigned("==", fn.args[0], ir.Constant(ir.PTR, None))):
            pass
    assert max(len(bb.name) for bb in fn.basic_blocks) <= len("endif.300")


def test_constants_print_as_llvm_reads_them():
    assert ir.Constant(ir.ArrayType(I8, 6), bytearray(b'a"\\\0\n~')).ref == 'c"a\\22\\5C\\00\\0A~"'
    assert ir.Constant(ir.ArrayType(I64, 2), [ir.Constant(I64, 1), ir.Constant(I64, 2)]).ref \
        == "[i64 1, i64 2]"
    st = ir.LiteralStructType([I32, I32])
    assert st.ir == "{i32, i32}"
    assert ir.Constant(st, [ir.Constant(I32, 3), ir.Constant(I32, 4)]).ref == "{i32 3, i32 4}"
    assert ir.Constant(ir.PTR, None).ref == "null"
    assert ir.IntType(64) == I64 and ir.IntType(32) != I64 and I64.width == 64


def every_instruction(fn):
    """A function that calls each IRBuilder method the code generator uses."""
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    slot = b.alloca(ir.ArrayType(I64, 2))
    b.store(ir.Constant(I64, 0), slot, align=8)
    p = b.gep(slot, [ir.Constant(I64, 8)], source_etype=I8)
    b.store(ir.Constant(I64, 7), p, align=8)
    v = b.load(p, typ=I64, align=8)
    w = v
    for op in ("add", "sub", "mul", "udiv", "urem", "sdiv", "srem", "and_", "or_", "xor",
               "shl", "lshr", "ashr"):
        w = getattr(b, op)(w, ir.Constant(I64, 3))
    w = b.neg(b.not_(w))
    w = b.sext(b.trunc(w, I32), I64)
    w = b.zext(b.load(slot, typ=I8, align=1), I64)
    w = b.bswap(b.bswap(w))
    pid = b.call(b.inttoptr(ir.Constant(I64, 14), ir.PTR), [])
    ptr = b.inttoptr(pid, ir.PTR)
    c = b.icmp_signed("<", b.ptrtoint(ptr, I64), ir.Constant(I64, 0))
    s = b.select(c, w, v)
    start = b.block
    loop, done = fn.append_basic_block("loop"), fn.append_basic_block("done")
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), start)
    nxt = b.add(i, ir.Constant(I64, 1))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_unsigned("<", nxt, ir.Constant(I64, 4)), loop, done)
    b.position_at_end(done)
    with b.if_else(b.icmp_unsigned(">=", s, nxt)) as (then, otherwise):
        with then:
            b.store(s, slot, align=8)
        with otherwise:
            b.store(nxt, slot, align=8)
    out = fn.append_basic_block("out")
    sw = b.switch(s, out)
    for k in (1, 2):
        case = fn.append_basic_block("case")
        sw.add_case(ir.Constant(I64, k), case)
        b.position_at_end(case)
        b.branch(out)
    b.position_at_end(out)
    b.ret(ir.Constant(I64, 0))


def test_a_module_with_every_instruction_compiles():
    llvm = pytest.importorskip("llvmlite.binding")
    m, fn = new_function()
    gv = ir.GlobalVariable(m, ir.ArrayType(I64, 1), "g")
    gv.initializer = ir.Constant(ir.ArrayType(I64, 1), [ir.Constant(I64, 5)])
    gv.section, gv.align = ".rodata", 8
    every_instruction(fn)
    text = str(m)
    assert text.count("declare i64 @\"llvm.bswap.i64\"") == 1
    mod = llvm.parse_assembly(text)
    mod.verify()
    from pytrace.codegen.emit import emit_object
    assert emit_object(text)[:4] == b"\x7fELF"

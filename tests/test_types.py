"""Type model: sizes, layouts, unification and manifest descriptors."""
from pytrace.types.model import (INT64, UINT64, AggT, IntT, PtrT, StrT, TupleT, bpftrace_name, unify)


def test_sizes_and_tuple_layout():
    # a C struct of its elements, as bpftrace 0.17 (natural alignment, integers at their width)
    t = TupleT((INT64, StrT(5), IntT(8, False), StrT(16)))
    assert t.offsets == [0, 8, 13, 14]
    assert t.size == 32
    assert TupleT((IntT(8), IntT(16), IntT(32))).size == 8
    assert AggT("avg").size == 16 and AggT("count").size == 8


def test_descriptors():
    assert TupleT((INT64, StrT(3))).descriptor() == {
        "kind": "tuple", "size": 16,
        "fields": [{"offset": 0, "type": {"kind": "int", "signed": True}},
                   {"offset": 8, "type": {"kind": "str", "size": 3}}]}
    assert PtrT("struct task_struct").descriptor() == {"kind": "ptr"}


def test_unify():
    assert unify(IntT(8, True), IntT(32, False)) == UINT64
    assert unify(StrT(4), StrT(16)) == StrT(16)
    assert unify(TupleT((INT64, StrT(2))), TupleT((INT64, StrT(9)))) == TupleT((INT64, StrT(9)))
    assert unify(StrT(4), INT64) is None
    assert unify(TupleT((INT64,)), TupleT((INT64, INT64))) is None


def test_bpftrace_names():
    assert bpftrace_name(INT64) == "int64"
    assert bpftrace_name(UINT64) == "unsigned int64"
    assert bpftrace_name(StrT(2)) == "string[2]"
    assert bpftrace_name(AggT("hist")) == "hist"
    assert bpftrace_name(TupleT((INT64, StrT(2)))) == "(int64,string[2])"

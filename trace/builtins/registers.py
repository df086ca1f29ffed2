"""reg() and uaddr(): registers and symbol addresses of register-based probes."""
from __future__ import annotations


from ..types.model import (UINT64)
from .registry import (function, string_literal_arg)


def _check_reg(ck, node):
    name = string_literal_arg(ck, node)
    node.reg_offset = ck.unit.provider.reg_offset(node, name)
    return UINT64


@function("reg", "reg(name): a register of the probe's context (pt_regs: kprobe, uprobe, usdt).",
          _check_reg, signature='reg("name")')
def _reg(lw, node):
    return lw.fb.load(lw.fb.ctx, node.reg_offset)


def _check_uaddr(ck, node):
    symbol = string_literal_arg(ck, node)
    return ck.unit.provider.check_uaddr(ck, node, symbol)


@function("uaddr", "uaddr(sym): the address of a symbol in the probed binary (uprobe, usdt).",
          _check_uaddr, signature='uaddr("sym")')
def _uaddr(lw, node):
    return lw.unit.provider.lower_uaddr(lw, node)

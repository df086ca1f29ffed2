"""Attach points → program units.

Every attach point is parsed and expanded by its provider. The expanded probes
of one block are grouped into program units: one BPF program per unit. Probes
share a unit when they have the same provider and, if the block reads the
probe's context (`args`), the same context layout.
"""
from __future__ import annotations

import copy

from ..runtime.record import record, field
from ..language import ast
from ..language.diagnostics import Diagnostic, Unresolved, error
from ..providers import ExpandedProbe, Provider, expand_attach_point


@record
class Unit:
    probe: ast.Probe
    provider: Provider
    probes: list[ExpandedProbe]
    body: list[ast.Stmt]
    cookies: list[int] = field(default_factory=list)
    symbol: str = ""
    section: str = ""
    var_types: dict[str, object] = field(default_factory=dict)   # $name -> Type (typecheck)

    @property
    def context(self) -> ExpandedProbe:
        return self.probes[0]


def _reads_args(probe: ast.Probe) -> bool:
    """args, or argN (whose location differs between usdt probes)."""
    nodes = list(ast.walk(probe))
    return any(isinstance(n, ast.Builtin) and (n.name == "args" or
                                               (n.name.startswith("arg") and n.name[3:].isdigit()))
               for n in nodes)


def build_units(program: ast.Program, options=None,
                warnings: list | None = None) -> list[Unit]:
    """The program units. options: the compile options (-c, -p), for the providers
    that expand by them. An attach point that resolves to nothing on this machine is
    skipped with a warning (as 0.17 skips it) unless nothing else is left."""
    units: list[Unit] = []
    seen_special = {}
    unresolved: list[Unresolved] = []
    for probe in program.probes:
        expanded: list[ExpandedProbe] = []
        for ap in probe.attach_points:
            ap.pid = options.pid if options is not None else None
            try:
                found = expand_attach_point(ap, options)
            except Unresolved as e:
                unresolved.append(e)
                found = []
            ap.expanded = [p.name for p in found]
            for p in found:
                if p.provider.once_per_script:      # BEGIN, END
                    if p.name in seen_special:
                        raise error(f"More than one {p.name} probe defined", ap.span)
                    seen_special[p.name] = ap
            expanded.extend(found)
        groups = {}
        per_context = _reads_args(probe)
        for p in expanded:
            separate = per_context or p.provider.program_per_probe   # kfunc, iter
            key = (id(p.provider), p.provider.context_key(p) if separate else None)
            groups.setdefault(key, []).append(p)
        first = True
        for members in groups.values():
            body = probe.body if first else copy.deepcopy(probe.body)
            first = False
            units.append(Unit(probe, members[0].provider, members, body))
        for p in expanded:
            for setup in p.provider.setup_probes(p):
                units.append(Unit(probe, setup.provider, [setup], []))
    if unresolved and not units:
        raise unresolved[0]
    if warnings is not None:
        warnings.extend(Diagnostic(f"{d.message} (the probe is skipped)", d.span, "WARNING")
                        for e in unresolved for d in e.diagnostics)
    return units

"""Resources: everything the object holds besides code, allocated before lowering.

- each program's symbol, section and probe cookies, and the probe list;
- each user map's kernel symbol and layout (docs/object-contract.md);
- the internal maps: the ring buffer, the lost-event counters, the globals, and
  the maps builtins need (a STACK_TRACE map per stack depth), from the entries'
  `maps` hooks;
- the async actions: every call whose entry sends a record to user space gets
  its action (from the entry's `action` hook) and its id in `Call.async_id`.

Only -k's helper_error actions are added while lowering (which helpers a
statement calls is known only there), and the watchpoint_arm actions of
watchpoint:func+argN setup programs, which have no body (their provider's
prologue sends them; Resources.cookie_of gives the cookie they name).
"""
from __future__ import annotations

import re

from ..builtins import lookup_builtin, lookup_function
from ..builtins.registry import InternalMap
from ..language import ast
from ..runtime.record import field, record
from ..runtime.uapi import (BPF_MAP_TYPE_ARRAY as MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH as MAP_TYPE_HASH,
                            BPF_MAP_TYPE_PERCPU_ARRAY as MAP_TYPE_PERCPU_ARRAY,
                            BPF_MAP_TYPE_PERCPU_HASH as MAP_TYPE_PERCPU_HASH,
                            BPF_MAP_TYPE_RINGBUF as MAP_TYPE_RINGBUF)
from ..types.model import packed

# The ring buffer holds the records that wait for the reader (Python: ~300k records/s):
# 16 MiB absorbs a burst of ~400k small printf records; a BEGIN/END-only program needs
# little and starts faster with 1 MiB. BPFTRACE_PERF_RB_PAGES overrides it at run time.
RINGBUF_BYTES = 1 << 24
RINGBUF_BYTES_BEGIN_END = 1 << 20

GLOBALS = {"start_ns": 0, "cpid": 8}     # slots of the globals map


@record
class Resources:
    actions: list[dict] = field(default_factory=list)
    internal: dict[str, InternalMap] = field(default_factory=dict)   # by role or symbol
    # the .data counters (u64 slots): 0 the records the ring buffer could not take,
    # then one a user map (its full_slot): the updates it refused, being full
    counters: int = 1
    cookies: dict[int, int] = field(default_factory=dict)   # id(ExpandedProbe) -> its cookie

    def cookie_of(self, probe) -> int:
        """The cookie (index in the manifest's probes) of an expanded probe."""
        return self.cookies[id(probe)]

    def add_action(self, action: dict) -> int:
        self.actions.append(action)
        return len(self.actions) - 1


def allocate(st) -> Resources:
    res = Resources()
    _programs(st, res)
    _user_maps(st)
    begin_end_only = all(p.name in ("BEGIN", "END") for u in st.units for p in u.probes)
    res.internal["ringbuf"] = InternalMap("ringbuf", MAP_TYPE_RINGBUF, 0, 0,
                                          RINGBUF_BYTES_BEGIN_END if begin_end_only else RINGBUF_BYTES)
    res.internal["globals"] = InternalMap("globals", MAP_TYPE_ARRAY, 4, 8 * len(GLOBALS), 1)
    res.counters = 1 + len(st.maps)
    for unit in st.units:
        for stmt in unit.body:
            for node in ast.walk(stmt):
                _node_resources(node, res, st.options)
    return res


def _node_resources(node, res: Resources, options):
    if isinstance(node, ast.Call):
        entry = lookup_function(node.name)
    elif isinstance(node, ast.Builtin):
        entry = lookup_builtin(node.name)
    else:
        return
    if entry is None:
        return
    if entry.action is not None:
        node.async_id = res.add_action(entry.action(node))
    if entry.maps is not None:
        for m in entry.maps(node, options):
            res.internal.setdefault(m.symbol, m)


def _programs(st, res):
    """Name every program, give it a section, and list the probes for the manifest."""
    probes = []
    used_sections = set()
    for i, unit in enumerate(st.units):
        unit.cookies = []
        for p in unit.probes:
            unit.cookies.append(len(probes))
            res.cookies[id(p)] = len(probes)
            probes.append(p.name)
        unit.symbol = f"prog_{i}"
        section = unit.provider.section(unit.probes[0])
        if section in used_sections:
            section = f"{section}/{i}"
        used_sections.add(section)
        unit.section = section
    st.manifest["probes"] = probes


def _user_maps(st):
    deleted = _deleted_maps(st.units)
    for i, info in enumerate(sorted(st.maps.values(), key=lambda m: m.name.encode())):
        info.symbol = kernel_name(f"m{i}_{info.name[1:]}")
        info.full_slot = 1 + i      # (the .data counters' slot 0 counts lost records)
        layout_map(info, st.options.max_map_keys, info.name in deleted)


def _deleted_maps(units) -> set:
    """Names of the maps a `delete(@m)` removes an element of."""
    return {n.args[0].name for u in units for stmt in u.body for n in ast.walk(stmt)
            if isinstance(n, ast.Call) and n.name == "delete" and n.args
            and isinstance(n.args[0], ast.Map)}


def kernel_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)[:15]


def layout_map(info, max_entries, deleted: bool = False):
    """Key/value sizes and kernel map type of one user map (see docs/object-contract.md).
    A keyless count is a one-slot PERCPU_ARRAY, unless the script deletes it (an
    array element can not be deleted; the runtime prints an empty one as 0)."""
    keys = info.keys or []
    user_key = packed(keys)[1] if keys else 8
    info.user_key_size = user_key
    kind = info.kind
    info.kernel_key_size = user_key + (8 if kind in ("hist", "lhist") else 0)
    info.value_size = info.value.size
    info.percpu = kind != "plain"
    info.max_entries = max_entries
    if kind == "count" and not keys and not deleted:
        info.map_type, info.max_entries = MAP_TYPE_PERCPU_ARRAY, 1
        info.kernel_key_size = 4
    elif info.percpu:
        info.map_type = MAP_TYPE_PERCPU_HASH
    else:
        info.map_type = MAP_TYPE_HASH
    if not keys and kind not in ("hist", "lhist") and info.map_type != MAP_TYPE_PERCPU_ARRAY:
        info.max_entries = 1

"""The async actions, in one table: kind → handler factory.

Every ring buffer record is ``{u64 async_id; payload}``; the manifest's
``actions[async_id]`` (a runtime.manifest.AsyncAction) says what user space does
with it (docs/object-contract.md, "async actions").  ``handlers()`` builds the
session's list of handlers, one per action: ``handler(record) -> None``, or
None for ``exit`` (the session stops there).  ``watchpoint_arm`` and ``unwatch``
act on the session's run-time watchpoints (``control``, an attach.OnCall).

``skboutput`` records come through perf buffers, not the ring buffer: runtime/perfbuf.py
writes them to their PCAP files, and one in the ring buffer is refused.

The actions on maps act here; those that print (printf, print_value, time, join,
system, cat, helper_error) are compiled by the output layer's method the table
names, and ``Output.record(action, record)`` finds that method here too.  An
action of a kind not in the table goes to ``Output.record``, which refuses it
(ValueError) when such a record arrives.
"""

import struct

from . import maps
from .errors import RuntimeFailure

_ADDR = struct.Struct("<Q")     # the u64 payload of watchpoint_arm and unwatch, at 8


class ByOutput:
    """A table entry for an action the output layer acts on: ``method`` names the
    Output method that compiles the action into a ``record -> None`` function."""

    __slots__ = ("method",)

    def __init__(self, method):
        self.method = method

    def __call__(self, action, aid, output, reader, control=None):
        record = output.record
        return lambda rec: record(action, rec)


def _exit(action, aid, output, reader, control=None):
    return None


def _user_map(action, aid, reader):
    """The UserMap an action names, and its kernel map."""
    try:
        meta = reader.meta(action.map)
    except KeyError:
        raise RuntimeFailure(f"async action {aid} refers to unknown map "
                             f"{action.map!r}") from None
    return meta, reader.kernel_map(action.map)


def _print_map(action, aid, output, reader, control=None):
    meta, km = _user_map(action, aid, reader)
    top, div = action.top, action.div
    return lambda rec: output.print_map(meta, maps.dump(km), top, div)


def _clear(action, aid, output, reader, control=None):
    _, km = _user_map(action, aid, reader)
    return lambda rec: maps.clear(km)


def _zero(action, aid, output, reader, control=None):
    meta, km = _user_map(action, aid, reader)
    kind = meta.kind
    return lambda rec: maps.zero(km, kind)


def _no_control(aid):
    raise RuntimeFailure(f"async action {aid} needs run-time watchpoints, which this run has not")


def _watchpoint_arm(action, aid, output, reader, control=None):
    if control is None:
        _no_control(aid)
    cookie, async_, unpack = action.cookie, action.async_, _ADDR.unpack_from
    if not async_:
        control.may_stop = True     # resumed at the stop even if no record is handled
    return lambda rec: control.arm(cookie, unpack(rec, 8)[0], async_)


def _unwatch(action, aid, output, reader, control=None):
    if control is None:
        _no_control(aid)
    unpack = _ADDR.unpack_from
    return lambda rec: control.unwatch(unpack(rec, 8)[0])


def _perf_buffer(action, aid, output, reader, control=None):
    def refuse(rec):
        raise RuntimeFailure(f"async action {aid} ({action.kind}) sent through the ring buffer")
    return refuse


# kind -> factory(action, async_id, output, maps reader, OnCall) -> handler or None
ACTIONS = {
    "exit": _exit,
    "print_map": _print_map,
    "clear": _clear,
    "zero": _zero,
    "watchpoint_arm": _watchpoint_arm,
    "unwatch": _unwatch,
    "skboutput": _perf_buffer,
    "printf": ByOutput("_compile_printf"),
    "print_value": ByOutput("_compile_print_value"),
    "time": ByOutput("_compile_time"),
    "join": ByOutput("_compile_join"),
    "system": ByOutput("_compile_system"),
    "cat": ByOutput("_compile_cat"),
    "helper_error": ByOutput("_compile_helper_error"),
}
_UNKNOWN = ByOutput(None)


def factory(kind: str):
    return ACTIONS[kind] if kind in ACTIONS else _UNKNOWN


def handlers(actions, output, reader, control=None) -> list:
    """One handler per action, in async_id order (None: exit)."""
    return [factory(action.kind)(action, aid, output, reader, control)
            for aid, action in enumerate(actions)]


def output_method(kind: str):
    """The name of the Output method that compiles actions of ``kind``, or None if
    the output layer does not act on them."""
    entry = factory(kind)
    return entry.method if isinstance(entry, ByOutput) else None

"""The async actions, in one table: kind → handler factory.

Every ring buffer record is ``{u64 async_id; payload}``; the manifest's
``actions[async_id]`` (a runtime.manifest.AsyncAction) says what user space does
with it (docs/object-contract.md, "async actions").  ``handlers()`` builds the
session's list of handlers, one per action: ``handler(record) -> None``, or
None for ``exit`` (the session stops there).

The actions on maps act here; those that print (printf, print_value, time, join,
system, cat, helper_error) are compiled by the output layer's method the table
names, and ``Output.record(action, record)`` finds that method here too.  An
action of a kind not in the table goes to ``Output.record``, which refuses it
(ValueError) when such a record arrives.
"""

from . import maps
from .errors import RuntimeFailure


class ByOutput:
    """A table entry for an action the output layer acts on: ``method`` names the
    Output method that compiles the action into a ``record -> None`` function."""

    __slots__ = ("method",)

    def __init__(self, method):
        self.method = method

    def __call__(self, action, aid, output, reader):
        record = output.record
        return lambda rec: record(action, rec)


def _exit(action, aid, output, reader):
    return None


def _user_map(action, aid, reader):
    """The UserMap an action names, and its kernel map."""
    try:
        meta = reader.meta(action.map)
    except KeyError:
        raise RuntimeFailure(f"async action {aid} refers to unknown map "
                             f"{action.map!r}") from None
    return meta, reader.kernel_map(action.map)


def _print_map(action, aid, output, reader):
    meta, km = _user_map(action, aid, reader)
    top, div = action.top, action.div
    return lambda rec: output.print_map(meta, maps.dump(km), top, div)


def _clear(action, aid, output, reader):
    _, km = _user_map(action, aid, reader)
    return lambda rec: maps.clear(km)


def _zero(action, aid, output, reader):
    meta, km = _user_map(action, aid, reader)
    kind = meta.kind
    return lambda rec: maps.zero(km, kind)


# kind -> factory(action, async_id, output, maps reader) -> handler or None
ACTIONS = {
    "exit": _exit,
    "print_map": _print_map,
    "clear": _clear,
    "zero": _zero,
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


def handlers(actions, output, reader) -> list:
    """One handler per action, in async_id order (None: exit)."""
    return [factory(action.kind)(action, aid, output, reader)
            for aid, action in enumerate(actions)]


def output_method(kind: str):
    """The name of the Output method that compiles actions of ``kind``, or None if
    the output layer does not act on them."""
    entry = factory(kind)
    return entry.method if isinstance(entry, ByOutput) else None

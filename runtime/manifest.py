"""The manifest, typed: what the compiler tells the runtime about its object.

The compiler embeds the manifest as UTF-8 JSON in the ELF section ``.pytrace``
(docs/object-contract.md).  runtime.objfile parses it once, with
``Manifest.from_json``, into the records below, and the rest of the runtime
reads their attributes only.  Every record has

    Record.from_json(obj)   the record of a JSON object: the only code that
                            fills in a key the object lacks (with the field's
                            default below) and refuses a malformed object
                            (ObjectFormatError)
    record.to_json()        the JSON object again (dicts, lists, str, int, bool,
                            None); for what the compiler writes,
                            to_json(from_json(obj)) == obj

A field without a default is a key the object must have.  Attach entries and
async actions are one record class per ``kind`` (``AttachSpec.from_json`` and
``AsyncAction.from_json`` pick it); a kind this runtime does not know becomes an
``UnknownAttach`` / ``UnknownAction``, refused where it is acted on, as before
there were records.

Value type descriptors (``{"kind": "int", "signed": true}``, ...) and the
``{"offset", "type"}`` slots that place values in map keys and ring buffer
records stay JSON objects: the output layer decodes them.
"""

from __future__ import annotations

from .errors import ObjectFormatError
from .record import field, fields, has_default, record

MANIFEST_VERSION = 1    # the only version so far; a manifest without "version" is one


def _invalid(what: str) -> ObjectFormatError:
    return ObjectFormatError(f"invalid .pytrace manifest: {what}")


def _shown(obj) -> str:
    text = repr(obj)
    return text if len(text) <= 200 else text[:197] + "..."


# ------------------------------------------------------------------ JSON <-> record

_KEEP = object()    # to_json: a field written whatever its value


def _plans(cls) -> tuple:
    """How the class reads and writes JSON, from its fields and the _keys, _convert
    and _sparse of the class and its bases: (reads, writes); reads: (field, key,
    converter, required) of each field in JSON; writes: (field, key, the default
    that leaves it out, or _KEEP)."""
    plans = cls.__dict__.get("_json_plans")
    if plans is None:
        keys, convert, sparse = {}, {}, set()
        for klass in reversed(cls.__mro__):
            keys.update(klass.__dict__.get("_keys", {}))
            convert.update(klass.__dict__.get("_convert", {}))
            sparse.update(klass.__dict__.get("_sparse", ()))
        named = [(f, keys[f.name] if f.name in keys else f.name) for f in fields(cls)]
        reads = tuple((f.name, key, convert[f.name] if f.name in convert else None,
                       not has_default(f)) for f, key in named if key is not None)
        writes = tuple((f.name, key, _default(f) if f.name in sparse else _KEEP)
                       for f, key in named if key is not None)
        plans = cls._json_plans = (reads, writes)
    return plans


def _from_json(cls, obj):
    if not isinstance(obj, dict):
        raise _invalid(f"{cls._what} is not a JSON object: {_shown(obj)}")
    kwargs = {}
    for name, key, convert, required in _plans(cls)[0]:
        if key in obj:
            value = obj[key]
            if convert is not None:
                try:
                    value = convert(value)
                except (TypeError, ValueError) as e:
                    raise _invalid(f"{cls._what} '{key}': {e}") from None
            kwargs[name] = value
        elif required:
            raise _invalid(f"{cls._what} has no '{key}': {_shown(obj)}")
    return cls(**kwargs)


def _default(f):
    return f.default_factory() if f.default_factory is not None else f.default


def _json_value(value):
    if isinstance(value, _Json):
        return value.to_json()
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


class _Json:
    """from_json/to_json driven by the record's fields.  Class attributes (merged
    along the bases): _keys {field: its JSON key, or None: not in JSON}, _convert
    {field: JSON value -> field value}, _sparse (fields to_json leaves out while
    they hold their default), _what (how errors name the object)."""

    _what = "entry"
    _keys = {}
    _convert = {}
    _sparse = ()

    @classmethod
    def from_json(cls, obj):
        return _from_json(cls, obj)

    def to_json(self) -> dict:
        out = {}
        for name, key, leave_out in _plans(type(self))[1]:
            value = getattr(self, name)
            if leave_out is _KEEP or value != leave_out:
                out[key] = _json_value(value)
        return out


def _int_or_0(value) -> int:
    """An integer where JSON null means 0."""
    return int(value or 0)


def _opt_int(value):
    return None if value is None else int(value)


def _tuple(value) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"not a list: {value!r}")
    return tuple(value)


def _tuple_of(convert):
    return lambda value: tuple(convert(v) for v in _tuple(value))


class _KeepsRaw:
    """An entry of a kind this runtime does not know: read with the base's fields,
    written back exactly as it came (its JSON is kept in ``raw``)."""
    _keys = {"raw": None}

    @classmethod
    def from_json(cls, obj):
        entry = _from_json(cls, obj)
        entry.raw = dict(obj)
        return entry

    def to_json(self) -> dict:
        return dict(self.raw) if self.raw else super().to_json()


# ------------------------------------------------------------------ attach entries

@record
class AttachSpec(_Json):
    """One place a program is attached.  ``cookie``: the index into the manifest's
    ``probes`` of the probe it serves (the BPF link's bpf_cookie)."""
    kind: str
    cookie: int = 0
    optional: bool = field(default=False, kw_only=True)   # a wildcard's expansion: may be skipped

    KINDS = ()
    # the kernel runs the programs on one event newest attachment first (its
    # consumer/perf-event lists add at the head): attach these in reverse script order
    NEWEST_FIRST = False
    _what = "attach entry"
    _convert = {"cookie": _int_or_0, "optional": bool}
    _sparse = ("optional",)

    @classmethod
    def from_json(cls, obj):
        if cls is not AttachSpec:
            return _from_json(cls, obj)
        kind = obj["kind"] if isinstance(obj, dict) and "kind" in obj else None
        return (_ATTACH_CLASSES[kind] if kind in _ATTACH_CLASSES else UnknownAttach).from_json(obj)

    def for_process(self, pid: int) -> None:
        """-p PID: restrict an entry that can target one process to it."""

    @property
    def deferred(self) -> bool:
        """Not attached when the trace starts: an async action attaches it later."""
        return False


@record
class RunOnceAttach(AttachSpec):
    """``begin`` / ``end``: not attached, run once with BPF_PROG_TEST_RUN."""
    KINDS = ("begin", "end")
    _sparse = ("cookie",)


@record
class TracepointAttach(AttachSpec):
    category: str
    event: str
    KINDS = ("tracepoint",)


@record
class RawTracepointAttach(AttachSpec):
    name: str
    KINDS = ("raw_tracepoint", "rawtracepoint")


@record
class PerfEventAttach(AttachSpec):
    """``freq``: ``period`` is a frequency; ``cpus``: "all" (every online CPU),
    "one" (CPU 0), a CPU number or a list of them."""
    type: int
    config: int = 0
    period: int = 0
    freq: bool = False
    cpus: object = "all"
    KINDS = ("perf_event",)
    NEWEST_FIRST = True
    _convert = {"type": int, "config": int, "period": int, "freq": bool}


@record
class KprobeAttach(AttachSpec):
    func: str
    offset: int = 0
    retprobe: bool = False      # older objects: a kprobe entry marked as a return probe
    KINDS = ("kprobe", "kretprobe")
    NEWEST_FIRST = True
    _convert = {"offset": int, "retprobe": bool}
    _sparse = ("retprobe",)

    @property
    def is_return(self) -> bool:
        return self.kind == "kretprobe" or self.retprobe


@record
class KfuncAttach(AttachSpec):
    func: str
    btf_id: int = 0
    KINDS = ("kfunc", "kretfunc", "fentry", "fexit")
    _convert = {"btf_id": int}

    @property
    def is_return(self) -> bool:
        return self.kind in ("kretfunc", "fexit")


@record
class UprobeAttach(AttachSpec):
    """``offset``: a file offset in ``path``; ``pid`` -1: every process (with ``child``:
    the -c child, if there is one).  usdt entries carry their semaphore's file offset as
    ``ref_ctr_offset``."""
    path: str
    offset: int
    pid: int = -1
    ref_ctr_offset: int = 0
    retprobe: bool = False      # older objects: an uprobe entry marked as a return probe
    child: bool = False
    KINDS = ("uprobe", "uretprobe", "usdt")
    NEWEST_FIRST = True
    _convert = {"offset": int, "pid": int, "ref_ctr_offset": int, "retprobe": bool,
                "child": bool}
    _sparse = ("ref_ctr_offset", "retprobe", "child")

    def for_process(self, pid: int) -> None:
        if self.pid == -1:
            self.pid = pid

    @property
    def is_return(self) -> bool:
        return self.kind == "uretprobe" or self.retprobe


@record
class WatchpointAttach(AttachSpec):
    """``bp_type``: r=1, w=2, x=4; ``pid`` -1: the -c child if any, else every CPU.
    ``on_call`` (watchpoint:func+argN): not attached at start; a WatchpointArmAction
    naming its cookie attaches it at each address the function is called with
    (``addr`` is 0)."""
    addr: int
    len: int
    bp_type: int
    pid: int = -1
    on_call: bool = False
    KINDS = ("watchpoint",)
    _convert = {"addr": int, "len": int, "bp_type": int, "pid": int, "on_call": bool}
    _sparse = ("on_call",)

    def for_process(self, pid: int) -> None:
        if self.pid == -1:
            self.pid = pid

    @property
    def deferred(self) -> bool:
        return self.on_call


@record
class IterAttach(AttachSpec):
    iterator: str
    pin: str = ""
    KINDS = ("iter",)


@record
class UnknownAttach(_KeepsRaw, AttachSpec):
    """A kind this runtime does not attach (attaching it fails)."""
    raw: dict = field(default_factory=dict, compare=False, repr=False)


_ATTACH_CLASSES = {kind: cls for cls in (
    RunOnceAttach, TracepointAttach, RawTracepointAttach, PerfEventAttach, KprobeAttach,
    KfuncAttach, UprobeAttach, WatchpointAttach, IterAttach) for kind in cls.KINDS}


# ------------------------------------------------------------------ programs

@record
class Program(_Json):
    """One BPF program: its symbol and section in the object, what PROG_LOAD needs,
    and where it is attached.  ``prog_type`` None: inferred from the ELF section;
    ``name`` (the kernel-visible name) empty: the symbol; ``span``: [line, col,
    end_line, end_col] of the probe in the source."""
    symbol: str
    section: str = ""
    prog_type: int | None = None
    name: str = ""
    attach: tuple = ()
    span: tuple | None = None
    expected_attach_type: int = 0
    attach_btf_id: int = 0

    _what = "program"
    _convert = {"prog_type": _opt_int, "attach": _tuple_of(AttachSpec.from_json),
                "span": lambda v: None if v is None else _tuple(v),
                "expected_attach_type": _int_or_0, "attach_btf_id": _int_or_0}
    _sparse = ("span", "expected_attach_type", "attach_btf_id")

    def __post_init__(self):
        if not self.name:
            self.name = self.symbol

    @property
    def attach_kinds(self) -> frozenset:
        return frozenset(a.kind for a in self.attach)


# ------------------------------------------------------------------ maps

@record
class MapKey(_Json):
    """``size``: bytes of the user's key; ``fields``: its components, {offset, type}
    slots (a keyless map: none, and a zero key)."""
    size: int
    fields: tuple = ()
    _what = "map key"
    _convert = {"size": int, "fields": _tuple}


@record
class Lhist(_Json):
    min: int
    max: int
    step: int
    _what = "lhist"
    _convert = {"min": int, "max": int, "step": int}


def _int_value() -> dict:
    return {"kind": "int", "signed": True}


@record
class UserMap(_Json):
    """A map of the script (``@name``).  ``kind``: count sum min max avg stats hist
    lhist plain; ``value``: the type descriptor of a value (of an aggregation: its
    integer); ``lhist``: the bounds of an lhist map."""
    name: str
    symbol: str = ""
    kind: str
    percpu: bool = False
    key: MapKey
    value_size: int = 0
    value: dict = field(default_factory=_int_value)
    lhist: Lhist | None = None
    full_slot: int = -1         # its slot in internal.full (-1: none, an older object)

    _what = "map"
    _convert = {"percpu": bool, "key": MapKey.from_json, "value_size": int, "full_slot": int,
                "value": lambda v: v or _int_value(),
                "lhist": lambda v: None if v is None else Lhist.from_json(v)}
    _sparse = ("lhist", "full_slot")


@record
class InternalMaps(_Json):
    """The symbols of the runtime's own maps (None: the object has none)."""
    ringbuf: str | None = None
    lost: str | None = None      # ".data" (its first u64): records the ring buffer could not take
    globals: str | None = None
    full: str | None = None      # ".data" (u64 at 8 x UserMap.full_slot): updates dropped, map full
    _what = "internal"
    _sparse = ("ringbuf", "lost", "globals", "full")


@record
class GlobalSlots(_Json):
    """Byte offsets of the u64 slots the runtime writes into the globals map."""
    start_ns: int | None = None
    cpid: int | None = None
    _what = "globals"
    _convert = {"start_ns": _opt_int, "cpid": _opt_int}
    _sparse = ("start_ns", "cpid")


# ------------------------------------------------------------------ async actions

@record
class AsyncAction(_Json):
    """What user space does with a ring buffer record ``{u64 async_id; payload}``:
    the manifest's ``async[async_id]``.  The payload starts at offset 8."""
    kind: str

    KINDS = ()
    _what = "async action"

    @classmethod
    def from_json(cls, obj):
        if cls is not AsyncAction:
            return _from_json(cls, obj)
        kind = obj["kind"] if isinstance(obj, dict) and "kind" in obj else None
        return (_ACTION_CLASSES[kind] if kind in _ACTION_CLASSES else UnknownAction).from_json(obj)


@record
class FormattedAction(AsyncAction):
    """printf, system, cat: ``format`` applied to ``args`` ({offset, type} slots)."""
    format: str
    args: tuple = ()
    KINDS = ("printf", "system", "cat")
    _convert = {"args": _tuple}


@record
class PrintValueAction(AsyncAction):
    arg: dict
    KINDS = ("print_value",)


@record
class PrintMapAction(AsyncAction):
    map: str
    top: int = 0
    div: int = 0
    KINDS = ("print_map",)
    _convert = {"top": _int_or_0, "div": _int_or_0}


@record
class MapAction(AsyncAction):
    """clear, zero: of the map named ``map``."""
    map: str
    KINDS = ("clear", "zero")


@record
class TimeAction(AsyncAction):
    format: str = "%H:%M:%S\n"
    KINDS = ("time",)


@record
class JoinAction(AsyncAction):
    """Payload: u64 count at 8, then ``max_args`` strings of ``arg_size`` bytes."""
    delim: str = " "
    max_args: int
    arg_size: int
    KINDS = ("join",)
    _convert = {"max_args": int, "arg_size": int}


@record
class HelperErrorAction(AsyncAction):
    """-k: a helper failed.  ``message``: [before, after] the error text; ``args``:
    one slot, the helper's negative result."""
    helper: str
    message: tuple
    line: int
    col: int
    args: tuple
    KINDS = ("helper_error",)
    _convert = {"message": _tuple, "line": int, "col": int, "args": _tuple}


@record
class WatchpointArmAction(AsyncAction):
    """watchpoint:func+argN: the uprobe on func sent argN (payload: u64 at 8); attach
    the ``on_call`` watchpoint entry whose cookie is ``cookie`` at that address.  Not
    ``async``: the uprobe stopped the process (SIGSTOP); SIGCONT it once armed."""
    cookie: int
    async_: bool = False
    KINDS = ("watchpoint_arm",)
    _keys = {"async_": "async"}
    _convert = {"cookie": int, "async_": bool}


@record
class UnwatchAction(AsyncAction):
    """unwatch(addr): remove every armed watchpoint on addr (payload: u64 at 8)."""
    KINDS = ("unwatch",)


@record
class SkbOutputAction(AsyncAction):
    """skboutput(path, skb, len, offset): its records come through the perf event
    array ``map`` (runtime/perfbuf.py), not the ring buffer: ``{u64 async_id; u64
    captured length; u64 boot ns}`` and the skb's bytes; those from ``offset`` on
    go to the PCAP file ``path``."""
    path: str
    offset: int
    map: str
    KINDS = ("skboutput",)
    _convert = {"offset": int}


@record
class ExitAction(AsyncAction):
    KINDS = ("exit",)


@record
class UnknownAction(_KeepsRaw, AsyncAction):
    """A kind this runtime does not act on (acting on it fails)."""
    raw: dict = field(default_factory=dict, compare=False, repr=False)


_ACTION_CLASSES = {kind: cls for cls in (
    FormattedAction, PrintValueAction, PrintMapAction, MapAction, TimeAction, JoinAction,
    HelperErrorAction, WatchpointArmAction, UnwatchAction, SkbOutputAction,
    ExitAction) for kind in cls.KINDS}


# ------------------------------------------------------------------ the manifest

@record
class Manifest(_Json):
    """``probes``: every probe's name (attach cookies and the ``probe`` builtin index
    it); ``actions``: the JSON ``async`` list, indexed by a record's async_id."""
    version: int = MANIFEST_VERSION
    probes: tuple = ()
    programs: tuple = ()
    maps: tuple = ()
    internal: InternalMaps = field(default_factory=InternalMaps)
    globals: GlobalSlots = field(default_factory=GlobalSlots)
    actions: tuple = ()

    _what = "manifest"
    _keys = {"actions": "async"}
    _convert = {"probes": _tuple, "programs": _tuple_of(Program.from_json),
                "maps": _tuple_of(UserMap.from_json),
                "internal": lambda v: InternalMaps.from_json(v or {}),
                "globals": lambda v: GlobalSlots.from_json(v or {}),
                "actions": _tuple_of(AsyncAction.from_json)}

    @classmethod
    def from_json(cls, obj):
        if not isinstance(obj, dict):
            raise _invalid("not a JSON object")
        version = obj["version"] if "version" in obj else MANIFEST_VERSION
        if type(version) is not int or version != MANIFEST_VERSION:
            raise ObjectFormatError(
                f"unsupported .pytrace manifest version {version!r}: this runtime reads "
                f"version {MANIFEST_VERSION} (compile the program with the same pytrace)")
        return _from_json(cls, obj)

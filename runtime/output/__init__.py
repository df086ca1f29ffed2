"""pytrace's output layer: bpftrace 0.17 compatible text and JSON output, and folded
stacks (text output but for maps keyed by stacks, see folded.py).

Standard library only (the runtime never imports the compiler, lark or
llvmlite).

Public API (``manifest``, ``action`` and ``map_meta`` are the manifest's typed
records, runtime.manifest: Manifest, AsyncAction, UserMap)::

    out = make_output(manifest, stream, fmt="text")   # or "json", "folded"
    out.attached(n)                 # "Attaching N probes..."
    out.lost(n)                     # "Lost N events"
    out.record(action, record)      # one ring buffer record: printf,
                                    # print_value, time, join, system, cat,
                                    # helper_error (runtime.actions names the
                                    # method that compiles each kind)
    out.print_value(type_desc, raw) # print(value)
    out.print_map(map_meta, entries, top=0, div=0)
    out.print_maps_at_exit([(map_meta, entries), ...])
    out.flush()

``entries`` is a list of ``(key_bytes, [value_bytes per CPU])``, one slot
per possible CPU for per-CPU maps and a one-element list otherwise.

The stream may be a text stream (``sys.stdout``, a file opened in text
mode, ``io.StringIO``) or a binary one (``open(path, "wb")``, ``io.BytesIO``).
Bytes from the kernel that are not UTF-8 are written back unchanged when the
stream can take bytes.
"""

from __future__ import annotations

import codecs
import io
import os
import struct
import sys
import time as _time

from .. import environment
from . import json as _json
from . import text as _text
from ..actions import output_method
from ..manifest import (AsyncAction, FormattedAction, HelperErrorAction, JoinAction, Manifest,
                        PrintValueAction, TimeAction, UserMap)
from .printf import compile_format
from .values import (DecodeContext, UserNames, build_map_model, make_decoder,
                     make_record_decoder)

__all__ = ["make_output", "Output", "TextOutput", "JsonOutput", "FoldedOutput", "UserNames"]

_U64_COUNT = struct.Struct("<Q").unpack_from
_I64 = struct.Struct("<q").unpack_from


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (found through /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        kids = []
    try:
        os.kill(pid, 9)
    except OSError:
        pass
    for k in kids:
        _kill_tree(k)


class _Writer:
    """Writes ``str`` (surrogateescape for raw bytes) or ``bytes`` to a stream
    of either kind, keeping raw bytes intact where the stream allows."""

    def __init__(self, stream):
        self.stream = stream
        self.binary = self._is_binary(stream)
        self.buffer = None
        self.utf8 = False
        if not self.binary:
            self.buffer = getattr(stream, "buffer", None)
            enc = getattr(stream, "encoding", None) or "utf-8"
            try:
                self.utf8 = codecs.lookup(enc).name == "utf-8"
            except LookupError:
                self.utf8 = False
            if self.buffer is None:
                self.utf8 = True     # StringIO and friends take any str
        try:
            self.tty = bool(stream.isatty())
        except Exception:
            self.tty = False

    @staticmethod
    def _is_binary(stream) -> bool:
        if isinstance(stream, io.TextIOBase):
            return False
        if isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
            return True
        return "b" in getattr(stream, "mode", "")

    def write_str(self, s: str) -> None:
        if not s:
            return
        if self.binary:
            self.stream.write(s.encode("utf-8", "surrogateescape"))
            return
        if self.utf8:
            try:
                self.stream.write(s)
                return
            except UnicodeEncodeError:
                if self.buffer is None:
                    raise
        self._write_raw(s.encode("utf-8", "surrogateescape"))

    def write_bytes(self, b: bytes) -> None:
        if not b:
            return
        if self.binary:
            self.stream.write(b)
            return
        if self.utf8:
            try:
                self.stream.write(b.decode("utf-8"))
                return
            except UnicodeDecodeError:
                if self.buffer is None:
                    self.stream.write(b.decode("utf-8", "surrogateescape"))
                    return
        self._write_raw(b)

    def _write_raw(self, b: bytes) -> None:
        self.stream.flush()            # keep order with the text layer
        self.buffer.write(b)
        self.buffer.flush()

    def flush(self) -> None:
        self.stream.flush()


class Output:
    """Common part of the text and JSON outputs (decoding, reduction, sorting)."""

    fmt = "text"

    def __init__(self, manifest: Manifest, stream, usernames: UserNames | None = None):
        self.manifest = manifest if manifest is not None else Manifest()
        self.ctx = DecodeContext(self.manifest.probes, usernames)
        self._w = _Writer(stream)
        # -B line / none, or a terminal: each record is written out at once (else the
        # session flushes after each batch of records)
        self.flush_every_record = self._w.tty
        self._compiled: dict = {}

    # ---------------------------------------------------------------- basics
    def flush(self) -> None:
        self._w.flush()

    def _emit(self, s: str) -> None:
        self._w.write_str(s)

    def _after_record(self) -> None:
        if self.flush_every_record:
            self._w.flush()

    def set_maps_reader(self, reader) -> None:
        """The session's maps reader (runtime/maps.py MapsReader): stack values are
        looked up in their STACK_TRACE maps through it."""
        self.ctx.maps = reader

    def attached(self, n: int) -> None:
        raise NotImplementedError

    def lost(self, n: int) -> None:
        raise NotImplementedError

    def notice(self, text: str) -> None:
        """A line of the run's own, where 0.17 prints a lost_events message (a
        watchpoint without a free debug register)."""
        raise NotImplementedError

    # --------------------------------------------------------------- records
    def _compile(self, action: AsyncAction):
        """Per action: a function ``record -> None`` (the method runtime.actions
        names for its kind).  Cached by identity."""
        hit = self._compiled.get(id(action))
        if hit is not None and hit[0] is action:
            return hit[1]
        method = output_method(action.kind)
        if method is None:
            raise ValueError("the output layer does not handle async action %r"
                             % (action.kind,))
        fn = getattr(self, method)(action)
        self._compiled[id(action)] = (action, fn)
        return fn

    def record(self, action: AsyncAction, record) -> None:
        """Handle one ring buffer record (``{u64 async_id; payload}``)."""
        self._compile(action)(record)
        self._after_record()

    def _compile_printf(self, action: FormattedAction):
        return self._compile_formatted(action, self._printf)

    def _compile_system(self, action: FormattedAction):
        return self._compile_formatted(action, self._system)

    def _compile_cat(self, action: FormattedAction):
        return self._compile_formatted(action, self._cat)

    def _compile_formatted(self, action: FormattedAction, out):
        """printf, system, cat: the format applied to the record's arguments, to `out`
        (bytes: the text printed, the command run, the file read)."""
        fmt = compile_format(action.format)
        decode_args = make_record_decoder(list(action.args), self.ctx)
        render = _text.value_text
        apply = fmt.apply

        def fn(rec):
            out(apply(decode_args(rec), render))
        return fn

    def _compile_print_value(self, action: PrintValueAction):
        dec = make_decoder(action.arg["type"], self.ctx)
        off = int(action.arg["offset"])

        def fn(rec):
            self._value(dec(rec, off))
        return fn

    def _compile_time(self, action: TimeAction):
        fmt = action.format

        def fn(rec):
            self._time(fmt)
        return fn

    def _compile_helper_error(self, action: HelperErrorAction):
        """-k: a helper failed; the record holds its (negative) result."""
        offset = int(action.args[0]["offset"])

        def fn(rec):
            self._helper_error(action, _I64(rec, offset)[0])
        return fn

    def _system(self, command: bytes) -> None:
        """The command's standard output, through /bin/sh (popen() in bpftrace); its
        standard error is pytrace's."""
        import subprocess    # lazy: start-up time (only programs with system() need it)
        self.flush()
        with subprocess.Popen(command, shell=True, stdout=subprocess.PIPE) as proc:
            try:
                data = proc.communicate()[0]
            except BaseException:   # a second Ctrl-C: the command and its children end too
                _kill_tree(proc.pid)
                raise
        self._message("syscall", data)

    def _cat(self, path: bytes) -> None:
        """At most BPFTRACE_CAT_BYTES_MAX bytes (default 10240) of the file."""
        limit = environment.number("BPFTRACE_CAT_BYTES_MAX")
        try:
            with open(path, "rb") as f:
                data = f.read(limit)
        except OSError as e:
            self.flush()
            name = path.decode("utf-8", "replace")
            sys.stderr.write(f"ERROR: failed to open file '{name}': {os.strerror(e.errno)}\n")
            return
        self._message("cat", data)

    def _compile_join(self, action: JoinAction):
        delim = action.delim
        if isinstance(delim, str):
            delim = delim.encode("utf-8", "surrogateescape")
        max_args = action.max_args
        arg_size = action.arg_size

        def fn(rec):
            count = min(_U64_COUNT(rec, 8)[0], max_args)
            parts = []
            for i in range(count):
                start = 16 + i * arg_size
                raw = bytes(rec[start:start + arg_size])
                nul = raw.find(b"\0")
                parts.append(raw if nul < 0 else raw[:nul])
            self._join(delim.join(parts))
        return fn

    def _time(self, fmt: str) -> None:
        try:
            s = _time.strftime(fmt, _time.localtime())
        except (ValueError, UnicodeError):
            s = ""
        self._timestr(s)

    # -------------------------------------------------------------- printing
    def print_value(self, type_desc: dict, raw) -> None:
        """``print(value)``: the value decoded from ``raw`` and a newline."""
        self._value(make_decoder(type_desc, self.ctx)(raw, 0))

    def model(self, map_meta: UserMap, entries, top: int = 0, ordered: bool = True):
        return build_map_model(map_meta, entries, self.ctx, top=top or 0, ordered=ordered)

    def print_map(self, map_meta: UserMap, entries, top: int = 0, div: int = 0) -> None:
        raise NotImplementedError

    def print_maps_at_exit(self, maps) -> None:
        """Print every map, in bytewise name order (``@`` < ``@A`` < ``@a``)."""
        for meta, entries in sorted(maps, key=lambda m: m[0].name.encode(
                "utf-8", "surrogateescape")):
            self.print_map(meta, entries)

    # hooks
    def _value(self, v) -> None:
        raise NotImplementedError

    def _printf(self, data: bytes) -> None:
        raise NotImplementedError

    def _join(self, data: bytes) -> None:
        raise NotImplementedError

    def _timestr(self, s: str) -> None:
        raise NotImplementedError

    def _message(self, mtype: str, data: bytes) -> None:
        """What system() ("syscall") or cat() ("cat") produced."""
        raise NotImplementedError

    def _helper_error(self, action: HelperErrorAction, err: int) -> None:
        raise NotImplementedError


class TextOutput(Output):
    fmt = "text"

    def attached(self, n: int) -> None:
        self._emit(_text.attached_text(n))
        self.flush()        # printed before attaching, which may take a while

    def lost(self, n: int) -> None:
        self._emit(_text.lost_text(n))
        self._after_record()

    def notice(self, text: str) -> None:
        self._emit(text + "\n")
        self._after_record()

    def _value(self, v) -> None:
        self._emit(_text.value_text(v) + "\n")

    def print_map(self, map_meta: UserMap, entries, top: int = 0, div: int = 0) -> None:
        self._emit(_text.map_text(self.model(map_meta, entries, top), div))

    def _printf(self, data: bytes) -> None:
        self._w.write_bytes(data)

    def _join(self, data: bytes) -> None:
        self._w.write_bytes(data + b"\n")

    def _timestr(self, s: str) -> None:
        self._emit(s)

    def _message(self, mtype: str, data: bytes) -> None:
        self._w.write_bytes(data)

    def _helper_error(self, action: HelperErrorAction, err: int) -> None:
        """`stdin:1:25-30: WARNING: Failed to map_update_elem: Argument list too long (-7)`,
        the source line and a caret: rendered by the compiler around the error text."""
        before, after = action.message
        # a lookup that found nothing is no errno: 0.17 prints its 0
        self._emit(f"{before}{os.strerror(-err)} ({err}){after}" if err else f"{before}0{after}")


class JsonOutput(Output):
    fmt = "json"

    def attached(self, n: int) -> None:
        self._emit(_json.attached_json(n))
        self.flush()

    def lost(self, n: int) -> None:
        self._emit(_json.lost_json(n))
        self._after_record()

    def notice(self, text: str) -> None:
        self._emit(_json.message_json("lost_events", text))
        self._after_record()

    def _value(self, v) -> None:
        self._emit(_json.value_json(v))

    def print_map(self, map_meta: UserMap, entries, top: int = 0, div: int = 0) -> None:
        self._emit(_json.map_json(self.model(map_meta, entries, top), div))

    def _printf(self, data: bytes) -> None:
        self._emit(_json.message_json("printf", _text.decode_str(data)))

    def _join(self, data: bytes) -> None:
        self._emit(_json.message_json("join", _text.decode_str(data)))

    def _timestr(self, s: str) -> None:
        self._emit(_json.message_json("time", s))

    def _message(self, mtype: str, data: bytes) -> None:
        self._emit(_json.message_json(mtype, _text.decode_str(data)))

    def _helper_error(self, action: HelperErrorAction, err: int) -> None:
        self._emit(_json.helper_error_json(action.helper, err, action.line, action.col))


class FoldedOutput(TextOutput):
    """``-f folded``: a map keyed by a stack, with integer values, as folded stack
    lines (folded.py); everything else as text mode."""

    fmt = "folded"

    def print_map(self, map_meta: UserMap, entries, top: int = 0, div: int = 0) -> None:
        from . import folded as _folded     # lazy: start-up time (only -f folded needs it)
        if not _folded.is_folded(map_meta):
            super().print_map(map_meta, entries, top, div)
            return
        self._emit(_folded.folded_map(self.model(map_meta, entries), top, div))


OUTPUTS = {"text": TextOutput, "json": JsonOutput, "folded": FoldedOutput}


def make_output(manifest: Manifest, stream, fmt: str = "text",
                usernames: UserNames | None = None) -> Output:
    """Create the output object for ``-f text`` (default), ``-f json`` or ``-f folded``.

    ``usernames`` is for tests (a :class:`UserNames` reading another file).
    """
    cls = OUTPUTS.get(fmt)
    if cls is None:
        raise ValueError("unknown output format %r (expected one of %s)"
                         % (fmt, ", ".join(map(repr, OUTPUTS))))
    return cls(manifest, stream, usernames)

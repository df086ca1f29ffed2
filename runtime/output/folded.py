"""``-f folded``: maps keyed by a stack as folded stacks, the input of flame graph tools.

One line per distinct stack: its frames root-first, joined with ``;``, a space and the
value (``workload;main;spin 42``), the format of Brendan Gregg's stackcollapse tools that
flamegraph.pl, inferno, speedscope and Pyroscope read.  Pure functions from the value
model (values.py) to ``str``; the output class (``FoldedOutput`` in ``__init__``) prints
every other map and value as text mode does.  The rules (docs/folded.md):

* a map is folded when a key component (or a tuple member of one) is a kstack or a
  ustack and its values are one integer each: count(), sum(), min(), max();
* the frames of a line: the key's other components as text mode prints a key
  component, root-most first, in key order; then each ustack, then each kstack
  (user before kernel, as stackcollapse-perf.pl), each outermost caller first; kernel
  frames end in ``_[k]`` when the key has both kinds of stack;
* a frame is the symbol without its ``+offset`` (unresolved: its ``0x..`` address as
  text mode prints it; ``raw`` mode: ``0x`` and the address); ``;`` and control
  characters become ``_``; an empty frame is ``[empty]``; a line with no frame at all
  (only empty stacks) has the one frame ``[empty]``;
* entries whose lines are equal (stacks that differ only in offsets) are merged with
  the map's own aggregation (count and sum add, min and max keep the extreme); then
  ``div`` applies, lines are sorted by value then text, ascending as text mode, and
  ``top`` keeps the last ``top`` lines.
"""

from __future__ import annotations

import re

from .text import value_text
from .values import MapModel, Stack, c_div

__all__ = ["folded_map", "is_folded", "has_stack", "frame_text", "stack_frames", "line_text",
           "EMPTY_FRAME"]

STACK_KINDS = ("kstack", "ustack")
FOLDED_KINDS = {"count": lambda a, b: a + b, "sum": lambda a, b: a + b,
                "min": min, "max": max}
EMPTY_FRAME = "[empty]"
KERNEL_MARK = "_[k]"

_OFFSET = re.compile(r"\+\d+(?=(?: \(.*\))?$)")       # "f+12", "f+12 (/lib/x.so)"
_UNSAFE = re.compile(r"[;\x00-\x1f\x7f]")              # ';' and control characters
_TRAILING_NUMBER = re.compile(r"\s(?=\d+(?:\.\d*)?$)")   # would read as a second count


def has_stack(desc: dict) -> bool:
    """Whether a type descriptor is, or holds in a tuple, a kstack or ustack."""
    kind = desc["kind"]
    if kind in STACK_KINDS:
        return True
    return kind == "tuple" and any(has_stack(f["type"]) for f in desc["fields"])


def is_folded(meta) -> bool:
    """Whether -f folded prints this map (a UserMap) as folded lines."""
    return meta.kind in FOLDED_KINDS and any(has_stack(f["type"]) for f in meta.key.fields)


def frame_text(text: str) -> str:
    """One frame as a folded line can hold it."""
    text = _TRAILING_NUMBER.sub("_", _UNSAFE.sub("_", text))
    return text or EMPTY_FRAME


def stack_frames(stack: Stack, mark: str = "") -> list:
    """The frames of a stack, outermost caller first."""
    if not stack.frames:
        return []
    if stack.mode == "raw":
        return ["0x%x%s" % (addr, mark) for addr, _ in reversed(stack.frames)]
    return [frame_text(_OFFSET.sub("", sym, count=1)) + mark
            for _, sym in reversed(stack.frames)]


def _flatten(key, out: list) -> list:
    for part in key:
        if type(part) is tuple:         # a tuple key component (not a C array or record)
            _flatten(part, out)
        else:
            out.append(part)
    return out


def line_text(key: tuple) -> str:
    """The frames of one map key, joined with ';'."""
    parts = _flatten(key, [])
    stacks = [p for p in parts if isinstance(p, Stack)]
    both = len({s.user for s in stacks}) == 2
    frames = [frame_text(value_text(p, as_key=True)) for p in parts if not isinstance(p, Stack)]
    for s in stacks:
        if s.user:
            frames += stack_frames(s)
    for s in stacks:
        if not s.user:
            frames += stack_frames(s, KERNEL_MARK if both else "")
    return ";".join(frames) or EMPTY_FRAME


def folded_map(model: MapModel, top: int = 0, div: int = 0) -> str:
    """A folded map (``is_folded``) as its folded lines; ``model`` is built without top."""
    combine = FOLDED_KINDS[model.kind]
    lines: dict = {}
    for e in model.entries:
        if e.value is None:             # a min/max no CPU has set
            continue
        line = line_text(e.key)
        old = lines.get(line)
        lines[line] = e.value if old is None else combine(old, e.value)
    if div and div != 1:
        lines = {line: (v // div if model.kind == "count" else c_div(v, div))
                 for line, v in lines.items()}
    rows = sorted(lines.items(), key=lambda lv: (lv[1], lv[0].encode("utf-8", "surrogateescape")))
    if top and len(rows) > top:
        rows = rows[len(rows) - top:]
    return "".join("%s %d\n" % (line, v) for line, v in rows)

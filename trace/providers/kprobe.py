"""kprobe / kretprobe: kernel function probes.

  kprobe:fn          kprobe:fn+OFF        kprobe:vfs_*  (wildcards over /proc/kallsyms)
  (as 0.17, no kprobe:module:fn: three parts are "requires 1 argument")

Program type KPROBE; the context is `struct pt_regs *`: arg0..arg5 are di, si,
dx, cx, r8, r9, retval is ax, func the probed function's name (the builtins
are shared with uprobe, see regs.RegsProvider).  Attach entries are
`{"kind": "kprobe"|"kretprobe", "func", "offset", "cookie"}`; the runtime
attaches them through the kprobe PMU, and reports a clear error on kernels
without kprobes (CONFIG_KPROBES unset).
"""
from __future__ import annotations

import functools
import re

from ..language.diagnostics import error
from . import ExpandedProbe, glob_match, probe_offset, register, split_attach_point
from .regs import RegsProvider
from ..runtime.manifest import KprobeAttach

KALLSYMS = "/proc/kallsyms"
# kernel functions a kretprobe could lock the machine up on (bpftrace 0.17's list:
# not `notrace`, but called from the kretprobe machinery itself)
BANNED_KRETPROBES = frozenset({"_raw_spin_lock", "_raw_spin_lock_irqsave",
                               "_raw_spin_unlock_irqrestore", "queued_spin_lock_slowpath"})


@functools.lru_cache(maxsize=1)
def kernel_functions() -> tuple[tuple[str, str], ...]:
    """(name, module) of every function symbol in /proc/kallsyms (module "" for vmlinux)."""
    out, seen = [], set()
    try:
        with open(KALLSYMS) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] not in ("t", "T", "w", "W"):
                    continue
                name = parts[2]
                mod = parts[3].strip("[]") if len(parts) > 3 else ""
                if name.startswith(("__pfx_", "__cfi_", "__kstrtab", "__ksymtab")):
                    continue
                if (name, mod) not in seen:
                    seen.add((name, mod))
                    out.append((name, mod))
    except OSError:
        return ()
    return tuple(out)


class Kprobe(RegsProvider):
    user_space = False
    lists_targets = False

    def __init__(self, name, retprobe):
        self.name, self.retprobe = name, retprobe
        self.override_return = not retprobe
        self.attach_kind = name

    def expand(self, ap) -> list[ExpandedProbe]:
        parts = split_attach_point(ap.raw)
        if len(parts) != 2 or not parts[1]:     # 0.17 has no kprobe:module:function
            raise error(f"{self.name} probe type requires 1 argument", ap.span)
        spec = parts[1]
        ap.target, ap.func = "", spec
        if "*" in spec:
            names = sorted({n for n, _mod in kernel_functions() if glob_match(spec, n)})
            if not names:
                raise error(f"No probes found for {self.name}:{spec}", ap.span)
            return [self._probe(ap, n, 0) for n in names]
        m = re.fullmatch(r"([A-Za-z_.][\w.]*)\+(\w+)", spec)
        if m:
            return [self._probe(ap, m.group(1), probe_offset(ap, m.group(2), self.retprobe), spec)]
        if not re.fullmatch(r"[A-Za-z_.][\w.]*", spec):
            raise error(f"Invalid {self.name} function: {spec}", ap.span)
        return [self._probe(ap, spec, 0)]

    def _probe(self, ap, func, offset, spec=None):
        if self.retprobe and func in BANNED_KRETPROBES:     # 0.17's words, its "error: " too
            raise error(f"error: kretprobe:{func} can't be used as it might lock up your "
                        f"system.", ap.span)
        return ExpandedProbe(f"{self.name}:{spec or func}", self, "", func, {"offset": offset})

    def section(self, probe):
        return f"{self.name}/{probe.func}"

    def attach_specs(self, probes, cookies):
        return [KprobeAttach(kind=self.attach_kind, func=p.func, offset=p.params["offset"], cookie=c)
                for p, c in zip(probes, cookies)]

    def context_key(self, probe):
        return None      # pt_regs: the same layout everywhere

    def listing(self, verbose, target=None):
        """Kernel functions from /proc/kallsyms (available_filter_functions may be unreadable);
        kretprobe takes the same names, so they are listed once, as kprobe."""
        if self.retprobe:
            return []
        return [f"kprobe:{n}" for n in sorted({name for name, _mod in kernel_functions()})]


KPROBE = register(Kprobe("kprobe", False))
KRETPROBE = register(Kprobe("kretprobe", True))

"""The provider interface: every hook the compiler calls on a probe provider.

A provider is one probe type (`kprobe`, `tracepoint`, ...). It parses and expands
attach points, lists probes, and says how a program of its kind is typed, lowered,
named and attached (its AttachSpec in the manifest). Generic code (units, typecheck,
registry, lower, compiler, listing) calls the hooks below directly: a provider
overrides those its probe type needs, and inherits the documented default of the
others. Only `expand`, `section` and `attach_spec` (or `attach_specs`) have no
default.

A provider's name and aliases are written once, in the probe-type table of
providers/__init__.py (PROBE_TYPES), which `register` reads.
"""
from __future__ import annotations

from ..runtime.record import record, field
from ..language.diagnostics import error
from ..runtime.manifest import AttachSpec


@record
class ExpandedProbe:
    """One concrete probe: its full bpftrace name and what the provider knows of it."""
    name: str
    provider: "Provider"
    target: str = ""
    func: str = ""
    params: dict = field(default_factory=dict)


class Provider:
    # ------------------------------------------------------------ what it is
    name = ""                  # the probe type's name (its aliases: PROBE_TYPES)
    prog_type = 0              # BPF_PROG_TYPE_* of its programs
    uses_args = False          # `args` is valid (then args_field types `args->NAME`)
    # where plain addresses (arg0, casts of integers) point: True user memory, False the
    # kernel's, None unknown (0.17's AddrSpace::none: read with the legacy bpf_probe_read,
    # which on x86-64 reads user memory below TASK_SIZE and kernel memory above)
    user_space = False
    retprobe = False           # fires on return (kretprobe, uretprobe, kretfunc)
    program_per_probe = False  # one program per probe, whatever the block reads
    once_per_script = False    # at most one probe of this type in a script (BEGIN, END)
    override_return = False    # override() may be used (kprobe)
    lists_targets = False      # list_matching(parts, pid) lists the probes of binaries

    # ------------------------------------------------------------ attach points
    def expand(self, ap) -> list[ExpandedProbe]:
        """Parse one AttachPoint (filling ap.target/ap.func) into concrete probes."""
        raise NotImplementedError

    def expand_for(self, ap, options) -> list[ExpandedProbe]:
        """expand, knowing the compile options (-c, -p). Default: expand(ap)."""
        return self.expand(ap)

    def setup_probes(self, probe: ExpandedProbe) -> list[ExpandedProbe]:
        """Probes that must run for this one to be attached, each a program of its own
        with no body: its provider's prologue is its code (watchpoint:func+argN: the
        uprobe on func that arms the watchpoint). Default: none."""
        return []

    def context_key(self, probe: ExpandedProbe):
        """Probes with the same context key (and the same block) share one program
        when the block reads the probe's context (args, argN). Default: None (all
        probes of the block share one)."""
        return None

    # ------------------------------------------------------------ the manifest
    def section(self, probe: ExpandedProbe) -> str:
        """The ELF section of the program serving probe."""
        raise NotImplementedError

    def attach_spec(self, probe: ExpandedProbe, cookie: int) -> AttachSpec:
        """The manifest attach entry of one probe (a runtime.manifest record)."""
        raise NotImplementedError

    def attach_specs(self, probes, cookies) -> list[AttachSpec]:
        """The manifest attach entries of one program serving these probes.
        Default: attach_spec of each probe."""
        return [self.attach_spec(p, c) for p, c in zip(probes, cookies)]

    def program_fields(self, probes) -> dict:
        """Extra fields of the manifest program entry (what PROG_LOAD needs beyond the
        program type: expected_attach_type, attach_btf_id). Default: none."""
        return {}

    # ------------------------------------------------------------ typing (typecheck, registry)
    def ctx_type(self, unit):
        """The type of the `ctx` builtin; None (the default): ctx is not available."""
        return None

    def type_source(self, unit):
        """Named C types of the probed code, looked up after the script's own and before
        the kernel's (a `TypeSpace` fallback: name -> cmodel type or None); None (the
        default): none."""
        return None

    def no_ctx_message(self) -> str:
        """The error for `ctx` where ctx_type is None."""
        return f"The ctx builtin can not be used with '{self.name}' probes"

    def args_field(self, ck, e):
        """The type of `args->NAME` (e a FieldAccess on args), noting on e what
        read_field needs. Called only when uses_args is set: no default."""
        raise NotImplementedError

    def check_register_builtin(self, ck, node):
        """The type of arg0..argN, sargN, retval and func. Default: an error naming
        the probe types that have the builtin."""
        name = node.name
        if name == "retval":
            raise error("The retval builtin can only be used with 'kretprobe' and 'uretprobe' and "
                        "'kfunc' probes", node.span)
        if name == "func":
            raise error(f"The func builtin can not be used with '{self.name}' probes", node.span)
        if name.startswith("sarg"):
            raise error(f"The {name} builtin can only be used with 'kprobes' and 'uprobes' probes",
                        node.span)
        raise error(f"The {name} builtin can only be used with 'kprobes', 'uprobes' and 'usdt' "
                    f"probes", node.span)

    def reg_offset(self, node, name: str) -> int:
        """reg("name"): the register's offset in the context. Default: an error (reg
        needs a pt_regs context)."""
        raise error(f'reg can not be used with "{self.name}" probes', node.span)

    def check_uaddr(self, ck, node, symbol: str):
        """uaddr("symbol"): its type, noting on node what lower_uaddr needs. Default: an
        error (uaddr needs a probed binary)."""
        raise error(f'uaddr can not be used with "{self.name}" probes', node.span)

    # ------------------------------------------------------------ lowering (lower, registry)
    def prologue(self, lw):
        """Code at the start of every program of this provider. Default: none."""

    def probe_cookie(self, lw):
        """The run-time cookie of the probe that fired, in a program serving several
        probes. Default: bpf_get_attach_cookie."""
        from ..codegen import builder as B    # lazy: start-up time (llvmlite; -l needs no codegen)
        return lw.fb.helper(B.GET_ATTACH_COOKIE, lw.fb.ctx)

    def read_field(self, lw, e) -> object | None:
        """The value of `args->NAME` (typed by args_field). None (the default): the field
        is read from the context at its tracepoint-format offset
        (builtins.context.read_tracepoint_field)."""
        return None

    def lower_register_builtin(self, lw, node):
        """The value of arg0..argN, sargN, retval or func (typed by
        check_register_builtin): no default."""
        raise NotImplementedError

    def lower_uaddr(self, lw, node):
        """The value of uaddr("symbol") (typed by check_uaddr): no default."""
        raise NotImplementedError

    # ------------------------------------------------------------ listing (-l, -lv)
    def listing(self, verbose: bool) -> list[str]:
        """The probes this machine offers, one line each (-lv: detail lines follow,
        indented); not called when lists_targets. Default: none."""
        return []

    def list_matching(self, parts: list[str], pid: int | None) -> list[str]:
        """When lists_targets: the probes matching the split pattern `parts` (type,
        target, ...; the target may be wildcarded), sorted, one line each; with pid
        (-p), those of that process. A pattern that cannot name its probes (the wrong
        number of parts) raises a CompileError; -l locates it on the whole pattern.
        Default: none."""
        return []

    def describe(self, line: str) -> list[str]:
        """-lv: detail lines of one listed probe, computed only for the probes that match
        the pattern. Default: none."""
        return []

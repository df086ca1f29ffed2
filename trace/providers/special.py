"""BEGIN and END: raw-tracepoint programs run once with BPF_PROG_TEST_RUN."""
from ..language.diagnostics import error
from . import PROG_RAW_TRACEPOINT, ExpandedProbe, Provider, register
from ..runtime.manifest import RunOnceAttach


class Special(Provider):
    prog_type = PROG_RAW_TRACEPOINT
    user_space = None          # 0.17: no address space

    def no_ctx_message(self) -> str:
        return "invalid program type"           # 0.17's words for BEGIN/END
    once_per_script = True

    def __init__(self, name):
        self.name = name

    def expand(self, ap):
        if ap.raw not in (self.name, self.name.lower()):
            raise error(f"{self.name} probe type takes no arguments", ap.span)
        return [ExpandedProbe(self.name, self)]

    def section(self, probe):
        return f"raw_tracepoint/{self.name.lower()}"

    def attach_spec(self, probe, cookie):
        return RunOnceAttach(kind=self.name.lower())



register(Special("BEGIN"))
register(Special("END"))

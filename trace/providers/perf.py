"""Perf-event probes: interval, profile, software, hardware."""
from __future__ import annotations

from ..language.diagnostics import error
from . import PERF_EVENT_CTX, PROG_PERF_EVENT, ExpandedProbe, Provider, register, split_attach_point

from ..runtime.uapi import PERF_COUNT_SW_CPU_CLOCK as SW_CPU_CLOCK
from ..runtime.uapi import PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE
from ..runtime.manifest import PerfEventAttach

UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000}

SOFTWARE_EVENTS = {  # name: (config, default count)
    "cpu-clock": (0, 1000000), "cpu": (0, 1000000),
    "task-clock": (1, 1000000),
    "page-faults": (2, 100), "faults": (2, 100),
    "context-switches": (3, 1000), "cs": (3, 1000),
    "cpu-migrations": (4, 1),
    "minor-faults": (5, 100),
    "major-faults": (6, 1),
    "alignment-faults": (7, 1),
    "emulation-faults": (8, 1),
    "dummy": (9, 1),
    "bpf-output": (10, 1),
}
SOFTWARE_ORDER = ["alignment-faults", "bpf-output", "context-switches", "cpu-clock",
                  "cpu-migrations", "dummy", "emulation-faults", "major-faults",
                  "minor-faults", "page-faults", "task-clock"]
SOFTWARE_CANONICAL = {"cpu": "cpu-clock", "faults": "page-faults", "cs": "context-switches"}

HARDWARE_EVENTS = {
    "cpu-cycles": (0, 1000000), "cycles": (0, 1000000),
    "instructions": (1, 1000000),
    "cache-references": (2, 1000000),
    "cache-misses": (3, 1000000),
    "branch-instructions": (4, 100000), "branches": (4, 100000),
    "branch-misses": (5, 100000),
    "bus-cycles": (6, 100000),
    "frontend-stalls": (7, 1000000),
    "backend-stalls": (8, 1000000),
    "ref-cycles": (9, 1000000),
}


def _count(text, ap):
    try:
        value = int(text, 0)
    except ValueError:
        raise error(f"Invalid rate of {ap.provider} probe: '{text}'", ap.span) from None
    if value <= 0:
        raise error(f"Invalid rate of {ap.provider} probe: '{text}'", ap.span)
    return value


class Timer(Provider):
    user_space = None          # 0.17: no address space
    """interval:UNIT:N fires on one CPU; profile:UNIT:N on every CPU."""
    prog_type = PROG_PERF_EVENT

    def ctx_type(self, unit):
        return PERF_EVENT_CTX

    def __init__(self, name, cpus):
        self.name, self.cpus = name, cpus

    def expand(self, ap):
        parts = split_attach_point(ap.raw)
        if len(parts) != 3:
            raise error(f"{self.name} probe must have unit of time", ap.span)
        unit, rate = parts[1], parts[2]
        ap.target, ap.func = unit, rate
        if unit not in ("s", "ms", "us", "hz"):
            raise error(f"{unit} is not an accepted unit of time", ap.span)
        value = _count(rate, ap)
        name = f"{self.name}:{unit}:{value}"
        if unit == "hz":
            params = {"period": value, "freq": True} if self.cpus == "all" else \
                     {"period": max(1, 1_000_000_000 // value), "freq": False}
        else:
            params = {"period": value * UNIT_NS[unit], "freq": False}
        return [ExpandedProbe(name, self, unit, str(value), params)]

    def section(self, probe):
        return "perf_event"

    def attach_spec(self, probe, cookie):
        return PerfEventAttach(kind="perf_event", type=PERF_TYPE_SOFTWARE, config=SW_CPU_CLOCK,
                               cpus=self.cpus, cookie=cookie, **probe.params)


class Counter(Provider):
    user_space = None          # 0.17: no address space
    """software:EVENT:COUNT and hardware:EVENT:COUNT (every CPU)."""
    prog_type = PROG_PERF_EVENT

    def ctx_type(self, unit):
        return PERF_EVENT_CTX

    def __init__(self, name, perf_type, events):
        self.name, self.perf_type, self.events = name, perf_type, events

    def expand(self, ap):
        parts = split_attach_point(ap.raw)
        if len(parts) not in (2, 3):
            raise error(f"{self.name} probe must have an event name", ap.span)
        event = parts[1]
        ap.target = event
        if event not in self.events:
            raise error(f"Invalid {self.name} event: {event}", ap.span)
        config, default = self.events[event]
        count = _count(parts[2], ap) if len(parts) == 3 and parts[2] else default
        ap.func = str(count)
        return [ExpandedProbe(f"{self.name}:{event}:{count}", self, event, str(count),
                              {"config": config, "period": count})]

    def section(self, probe):
        return "perf_event"

    def attach_spec(self, probe, cookie):
        return PerfEventAttach(kind="perf_event", type=self.perf_type, config=probe.params["config"],
                               period=probe.params["period"], freq=False, cpus="all", cookie=cookie)

    def listing(self, verbose, target=None):
        if self.name == "software":
            return [f"software:{e}:" for e in SOFTWARE_ORDER]
        return [f"hardware:{e}:" for e in sorted(set(self.events))]


register(Timer("interval", "one"))
register(Timer("profile", "all"))
register(Counter("software", PERF_TYPE_SOFTWARE, SOFTWARE_EVENTS))
register(Counter("hardware", PERF_TYPE_HARDWARE, HARDWARE_EVENTS))

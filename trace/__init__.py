"""pytrace: a bpftrace-compatible tracer.

The Python API (docs/api.md)::

    import pytrace
    result = pytrace.run('tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }',
                         duration=1)
    result.maps["@"]        # {"bash": 3, ...}

Its names load on first use, so that `import pytrace` (and the CLI's start-up)
loads neither the compiler nor the runtime.
"""
from .version import __version__
from .bytecode import install as _install_bytecode_cache

_install_bytecode_cache()    # first: every later import of pytrace's modules uses it

_API = ("run", "Trace", "Result")
_ERRORS = ("Error", "CompileError", "TraceError", "LoadError", "AttachError",
           "PrivilegeError", "UsageError")
_VALUES = ("Bucket", "Stats")

__all__ = ["__version__", *_API, *_ERRORS, *_VALUES]


def __getattr__(name: str):
    if name in _API:
        from . import api       # lazy: start-up time (the API loads on first use)
        return getattr(api, name)
    if name in _ERRORS:
        from . import errors    # lazy: start-up time (as the API)
        return getattr(errors, name)
    if name in _VALUES:
        from .runtime.output import plain   # lazy: start-up time (as the API)
        return getattr(plain, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(__all__))

"""Every builtin and function: the registry's lookups, with all entries registered.

`registry.py` is the mechanism (entries, lookups, shared argument checks); the
entries are grouped by topic in the other modules, each imported here so a
lookup sees every entry.
"""
from .registry import all_entries, lookup_builtin, lookup_function  # noqa: F401
from . import (aggregations, context, maps, output, registers, strings,  # noqa: F401
               unsafe, values)

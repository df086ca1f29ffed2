"""Every builtin and function: the registry's lookups, with all entries registered.

The mechanism and most entries are in `registry.py`; the entries for stacks,
symbols and values formatted in user space are in `valuefuncs.py`. Importing
this module imports both, so a lookup sees every entry (and neither of those
modules needs to import the other's users).
"""
from .registry import all_entries, lookup_builtin, lookup_function  # noqa: F401
from . import valuefuncs  # noqa: F401  (registers its entries)

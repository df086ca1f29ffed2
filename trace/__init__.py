__version__ = "0.1.0"

from .bytecode import install as _install_bytecode_cache

_install_bytecode_cache()    # first: every later import of pytrace's modules uses it

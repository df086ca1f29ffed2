"""How `-c CMD` becomes the child's argv: split at spaces, without a shell or
quoting, as bpftrace splits it (`-c "./prog 'A'"` passes `'A'`); empty words
(several spaces) are dropped."""
from __future__ import annotations


def command_argv(command: str) -> list:
    return [w for w in command.split(" ") if w]

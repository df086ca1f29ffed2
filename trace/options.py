"""The command line, read as bpftrace reads its own: GNU getopt_long.

Options and operands may come in any order (`pytrace script.bt -v 1 2`), `--`
ends the options, short options cluster (`-kk`, `-lv`, `-ke PROG`, `-ePROG`), and
a long option may be any unambiguous prefix of its name (`--emit-e FILE`,
`--emit-elf=FILE`). Errors are glibc's words, which bpftrace prints before its
usage. argparse did this before; importing and running it was ~10 ms of a
cached one-liner's start (it reads gettext catalogues and the terminal's size
even when nothing goes wrong).
"""
from __future__ import annotations


class UsageError(Exception):
    """A command line getopt_long refuses: the message after `pytrace: `."""


class Option:
    __slots__ = ("short", "long", "dest", "kind", "default")

    def __init__(self, short: str, long: str, dest: str, kind: str, default=None):
        self.short, self.long, self.dest, self.kind, self.default = short, long, dest, kind, default


# kind: "value" takes an argument, "flag" is set, "count" counts, "append" collects
OPTIONS = (
    Option("e", "", "program", "value"),
    Option("c", "", "command", "value"),
    Option("p", "", "pid", "value"),
    Option("o", "", "output", "value"),
    Option("f", "", "format", "value", "text"),
    Option("B", "", "buffering", "value"),
    Option("k", "", "helper_errors", "count", 0),
    Option("q", "", "quiet", "flag", False),
    Option("v", "", "verbose", "flag", False),
    Option("l", "", "list", "flag", False),
    Option("d", "", "dump_all", "flag", False),
    Option("I", "", "include_dirs", "append"),
    Option("V", "version", "version", "flag", False),
    Option("h", "help", "help", "flag", False),
    Option("", "dump-after", "dump_after", "value"),
    Option("", "emit-elf", "emit_elf", "value"),
    Option("", "emit-llvm", "emit_llvm", "value"),
    Option("", "unsafe", "unsafe", "flag", False),
    Option("", "usdt-file-activation", "usdt_file_activation", "flag", False),
    Option("", "include", "includes", "append"),
    Option("", "info", "info", "flag", False),
    Option("", "metrics", "metrics", "value"),
)
_SHORT = {o.short: o for o in OPTIONS if o.short}


class Args:
    """The options by `dest`, and `rest`: the operands (a script, then $1, $2, ...)."""

    def __init__(self):
        for o in OPTIONS:
            setattr(self, o.dest, [] if o.kind == "append" else o.default)
        self.rest = []

    def set(self, option: Option, value=None):
        if option.kind == "value":
            setattr(self, option.dest, value)
        elif option.kind == "append":
            getattr(self, option.dest).append(value)
        elif option.kind == "count":
            setattr(self, option.dest, getattr(self, option.dest) + 1)
        else:
            setattr(self, option.dest, True)


def parse(argv: list) -> Args:
    args = Args()
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            args.rest += argv[i:]
            break
        if word.startswith("--"):
            i = _long(args, word[2:], argv, i)
        elif word.startswith("-") and word != "-":
            i = _shorts(args, word[1:], argv, i)
        else:
            args.rest.append(word)
    return args


def _shorts(args: Args, letters: str, argv: list, i: int) -> int:
    for n, letter in enumerate(letters):
        option = _SHORT.get(letter)
        if option is None:
            raise UsageError(f"invalid option -- '{letter}'")
        if option.kind not in ("value", "append"):
            args.set(option)
            continue
        if letters[n + 1:]:
            args.set(option, letters[n + 1:])
        elif i < len(argv):
            args.set(option, argv[i])
            i += 1
        else:
            raise UsageError(f"option requires an argument -- '{letter}'")
        break
    return i


def _long(args: Args, text: str, argv: list, i: int) -> int:
    name, eq, value = text.partition("=")
    option = _long_option(name, text)
    takes = option.kind in ("value", "append")
    if eq and not takes:
        raise UsageError(f"option '--{option.long}' doesn't allow an argument")
    if takes and not eq:
        if i >= len(argv):
            raise UsageError(f"option '--{option.long}' requires an argument")
        value, i = argv[i], i + 1
    args.set(option, value if takes else None)
    return i


def _long_option(name: str, text: str) -> Option:
    """The option `name` names, exactly or as the unique prefix of one (`text`:
    the word after `--`, for the message)."""
    candidates = [o for o in OPTIONS if o.long and o.long.startswith(name)]
    exact = [o for o in candidates if o.long == name]
    if exact:
        return exact[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates or not name:
        raise UsageError(f"unrecognized option '--{text}'")
    names = " ".join(f"'--{o.long}'" for o in candidates)
    raise UsageError(f"option '--{name}' is ambiguous; possibilities: {names}")

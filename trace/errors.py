"""The errors of the Python API, which the CLI prints too (docs/api.md).

``str(e)`` of each is exactly what the CLI writes to stderr for it, and ``status``
the CLI's exit status.  Standard library only: ``import pytrace`` stays cheap.
"""


class Error(Exception):
    """Base of pytrace's errors."""

    status = 1      # the CLI's exit status

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class UsageError(Error, ValueError):
    """Options that cannot go together, or name nothing (a pid that does not exist)."""

    def __init__(self, message: str):
        super().__init__(f"ERROR: {message}\n")
        self.message = message


class CompileError(Error):
    """The program does not compile.  ``diagnostics``: the errors, each with
    ``message``, ``line``, ``column`` (1-based; None when the error has no place in
    the source), ``end_line`` and ``end_column`` (exclusive)."""

    def __init__(self, diagnostics, text: str):
        super().__init__(text)
        self.diagnostics = list(diagnostics)


class TraceError(Error):
    """The compiled program could not be run (loaded, attached) or its run failed.
    ``message``: the one-line error."""

    def __init__(self, message: str, text: str = ""):
        super().__init__(text or f"ERROR: {message}\n")
        self.message = message


class LoadError(TraceError):
    """The kernel's verifier rejected a program."""


class AttachError(TraceError):
    """A probe could not be attached (a probe type or event this kernel lacks)."""

    status = 255


class PrivilegeError(TraceError, PermissionError):
    """Not running as root: loading BPF programs needs it."""

    def __init__(self, message: str = "pytrace currently only supports running as the root user.",
                 text: str = ""):
        super().__init__(message, text)

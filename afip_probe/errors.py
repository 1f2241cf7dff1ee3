"""User-facing errors: the CLI prints these as one line and exits with code 2.

An error that tells the user to change a setting names it the way they gave it: a flag (``--resume``) when
the `afip-probe` command line runs, a Python argument (``resume=True``) otherwise. `option` renders the name.

Example:
    >>> option("resume"), option("max_new_tokens"), option("level", "full")
    ('resume=True', 'max_new_tokens', "level='full'")
    >>> with command_line():
    ...     option("resume"), option("max_new_tokens"), option("level", "full")
    ('--resume', '--max-new-tokens', '--record full')
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_CLI = contextvars.ContextVar("afip_probe_command_line", default=False)
_UNSET = object()

#: Python argument -> command-line flag, where the flag is not the argument's name in kebab case
FLAGS = {"output": "-o", "level": "--record", "exact": "--single-read", "correct": "--correct"}
#: switches: Python names them with their value (``resume=True``), the command line by the flag alone
SWITCHES = {"resume": True, "overwrite": True, "exact": False, "trust_remote_code": True, "do_sample": True}


class AfipError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class UnsupportedModelError(AfipError):
    """The model is not a vision-language model afip-probe knows how to trace."""


class StoreError(AfipError):
    """A trace store is missing, incompatible or damaged."""


class AfipWarning(UserWarning):
    """Something the user should know that does not stop the job (e.g. no traced image has ground truth, so
    no token is labelled); the command line prints it as one ``warning:`` line."""


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """While open, `option` names settings as command-line flags (the CLI runs every command inside it)."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def option(name: str, value: object = _UNSET) -> str:
    """A setting as the user gives it: ``--max-new-tokens`` on the command line, ``max_new_tokens`` in Python;
    with a `value`, ``--record full`` / ``level='full'``; switches with their value: ``--resume`` /
    ``resume=True``."""
    if _CLI.get():
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        if isinstance(value, (list, tuple)):
            value = " ".join(f"{flag} {v}" for v in value).removeprefix(f"{flag} ")
        return flag if value is _UNSET or name in SWITCHES else f"{flag} {value}"
    if value is _UNSET and name in SWITCHES:
        value = SWITCHES[name]
    return name if value is _UNSET else f"{name}={value!r}"


def require_positive(value: int, name: str) -> None:
    """Raise AfipError unless `value` >= 1 (`name`: the Python argument, e.g. ``max_new_tokens``)."""
    if value < 1:
        raise AfipError(f"{option(name)} must be at least 1, got {value}")

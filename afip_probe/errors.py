"""User-facing errors: the CLI prints these as one line and exits with code 2."""


class AfipError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class UnsupportedModelError(AfipError):
    """The model is not a vision-language model afip-probe knows how to trace."""


class StoreError(AfipError):
    """A trace store is missing, incompatible or damaged."""


def require_positive(value: int, flag: str) -> None:
    """Raise AfipError unless `value` >= 1 (e.g. ``--max-new-tokens``, ``--n``)."""
    if value < 1:
        raise AfipError(f"{flag} must be at least 1, got {value}")

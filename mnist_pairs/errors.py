"""The project's error types. `UserError`s are bad input a person can fix (a params file,
an override, a damaged file, a run that does not exist): the CLI prints their message and
exits with code 2, without a traceback. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input or a damaged file: the message says what is wrong and what to do."""


class ConfigError(UserError, ValueError):
    """A parameter file or override that cannot describe a run."""


class RunNotFound(UserError, FileNotFoundError):
    """A run folder that does not exist or holds no finished run."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read (truncated or corrupt)."""


class DigestMismatch(CheckpointError):
    """A file whose sha256 is not the one its folder recorded (damaged, edited or half-copied)."""


class TrainingDiverged(UserError, RuntimeError):
    """A loss or logit became NaN or infinite; last.pt still holds the last good epoch."""


class MNISTUnavailable(UserError, RuntimeError):
    """No source could provide verified MNIST files."""


def refuse_unknown(names, known, what: str) -> None:
    """Raise a ConfigError naming every one of `names` that is not in `known`, each with the
    closest known name ("did you mean …?"), and listing what is known."""
    import difflib

    known = list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        hints = []
        for n in sorted(map(str, unknown)):
            close = difflib.get_close_matches(n, known, n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"unknown {what}(s): {', '.join(hints)}; known: {', '.join(known)}")

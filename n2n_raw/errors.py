"""The one exception type for a user's mistake.

Everything that reads a file or an option raises :class:`InputError` with a one-line message that names
the file (or option) and the problem. The CLI prints it on stderr and exits with status 2; anything else is a
bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad user input: a missing/unreadable file, wrong shape/dtype/values, an unknown option value."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


def check_choice(value, choices, option: str, what: str = "value"):
    """``value`` when it is one of ``choices``; else InputError "OPTION: unknown WHAT 'v' (expected a, b or c)"."""
    if value not in choices:
        names = [str(c) for c in choices]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise InputError(f"{option}: unknown {what} {value!r} (expected {listed})")
    return value


def where(path, problem: str) -> InputError:
    """Build an :class:`InputError` whose message starts with the file's path."""
    return InputError(f"{path}: {problem}")

"""How the command-line entry points report a user error: one line on stderr, exit status 2;
and an interrupted run (Ctrl-C): one line, exit status 130 (128 + SIGINT, the shell's code)."""

import sys

# Raised for unknown names, bad config values, missing or malformed files: the user can fix them.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``removed`` lists what the unfinished run had written and was deleted."""

    def __init__(self, removed=()):
        super().__init__("interrupted")
        self.removed = list(removed)


def report_user_error(error):
    """Print ``error`` as one line (no traceback) and return the exit status for it."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    message = " ".join(str(message).split())  # one line, whatever the message held
    print(f"recbole-ext: error: {message}", file=sys.stderr)
    return 2


def report_interrupted(error=None):
    """Print one line for a Ctrl-C (naming what the unfinished run left and was removed); 130."""
    removed = getattr(error, "removed", [])
    what = f"; removed the unfinished run's {', '.join(removed)}" if removed else ""
    print(f"recbole-ext: interrupted{what}", file=sys.stderr)
    return 130

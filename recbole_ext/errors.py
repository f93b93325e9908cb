"""How the command-line entry points report a user error: one line on stderr, exit status 2."""

import sys

# Raised for unknown names, bad config values, missing or malformed files: the user can fix them.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError)


def report_user_error(error):
    """Print ``error`` as one line (no traceback) and return the exit status for it."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    print(f"recbole-ext: error: {message}", file=sys.stderr)
    return 2

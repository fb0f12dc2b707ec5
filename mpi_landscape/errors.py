"""The one exception type for mistakes a user can make.

Every error a user can cause (a malformed grid, a missing or ill-fitting
checkpoint, a file that does not match the request) is raised as
``LandscapeError`` with a message that says what to do. Entry points print the
message without a traceback and exit non-zero; anything else is a bug and keeps
its traceback. The checks below are the ones several entry points share.
"""

import os


class LandscapeError(Exception):
    """A user-facing error: the message is the whole story."""


def check_choice(flag: str, value: str, choices) -> None:
    """Refuse ``value`` for ``flag`` unless it is one of ``choices``."""
    if value not in choices:
        raise LandscapeError(f"{flag} {value!r}: choose one of {', '.join(choices)}")


def require_folder(path: str, what: str) -> None:
    """Refuse to write ``path`` when its folder does not exist or is not writable; ``what`` starts the message."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LandscapeError(f"{what}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LandscapeError(f"{what}: the folder {folder} is not writable")

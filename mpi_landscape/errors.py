"""The one exception type for mistakes a user can make.

Every error a user can cause (a malformed grid, a missing or ill-fitting
checkpoint, a file that does not match the request) is raised as
``LandscapeError`` with a message that says what to do. Entry points print the
message without a traceback and exit non-zero; anything else is a bug and keeps
its traceback.
"""


class LandscapeError(Exception):
    """A user-facing error: the message is the whole story."""

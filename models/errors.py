"""The exception for mistakes a user can make when naming or loading a model."""


class ModelError(Exception):
    """A user-facing error (unknown model, bad factory, checkpoint that does not fit).

    The message says what went wrong and what to do; callers print it as is.
    """

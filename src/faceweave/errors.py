"""User-facing errors.

A `FaceweaveError` is a mistake in what the user handed in (a file, a flag, a mask): the
CLI prints its message on one line and exits with status 2, the app shows it in the page.
The message names the problem and the fix. Bugs stay ordinary exceptions with tracebacks.
"""


class FaceweaveError(ValueError):
    """A bad input, explained in one line: what is wrong and how to fix it."""

"""The one exception type for bad input.

A `UserError` carries a single line that names the problem and what to do about it. The CLI prints
it as `error: <line>` and exits with status 2; library callers can catch it like any exception.
"""


class UserError(ValueError):
    """Bad input from the user: a config value, a file, a model that cannot be used."""

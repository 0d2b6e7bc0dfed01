"""The project's error type for problems a user can fix.

The CLI prints a :class:`UserError`'s message and exits with code 2; any other exception is
a bug and keeps its traceback (exit 1). Subclasses: ``config.ConfigError`` (a key or value of
the config), ``data.DatasetError`` (an annotation file or image), ``export.ExportError``.
It derives from ValueError so that callers of the Python API can catch it as before.
"""


class UserError(ValueError):
    """A problem the user can fix; the message says what, where, and what to do."""

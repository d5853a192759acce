"""Errors the studio reports to people as they are (no traceback)."""


class StorageError(RuntimeError):
    """The data folder could not be written or read (full disk, read-only folder, lost
    permissions). The message says what was and was not saved."""

"""Errors a user can act on. The CLI prints their message (no traceback); workers store it on the job."""


class DdpmError(Exception):
    """Base class: the message says what was wrong and what is valid."""


class DatasetUnavailable(DdpmError):
    """A dataset's files are missing and could not be downloaded."""


class CheckpointError(DdpmError):
    """A checkpoint is missing, corrupt, truncated or not one of ours."""


class InvalidOption(DdpmError):
    """An option is out of range or not one of the valid choices."""


class Cancelled(DdpmError):
    """The caller asked the job to stop (raised from a progress callback)."""

"""Errors that kdas_lite raises for user mistakes.

Each message names the offending file or value and says how to fix it. The command line
prints them as one line instead of a traceback.
"""


class KDASError(Exception):
    """Base class of every error caused by bad input rather than a bug."""


class DataError(KDASError):
    """A dataset file or folder is missing, unreadable or inconsistent."""


class CheckpointError(KDASError):
    """A checkpoint is missing, corrupt, unsafe or belongs to another architecture."""


class DownloadError(KDASError):
    """A download failed, was interrupted, or did not match its checksum."""


class TrainingError(KDASError):
    """Training cannot continue (for example the loss became NaN)."""

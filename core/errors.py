"""Errors the engine raises, each naming the broken rule and what to do about it.

Every error derives from :class:`TreecrownsError` and, where one fits, from the
built-in exception it resembles, so callers can catch either.
"""


class TreecrownsError(Exception):
    """Root of all errors raised by the treecrowns engine."""


class RasterError(TreecrownsError, OSError):
    """A raster is missing, unreadable or unsuitable for detection."""


class CheckpointError(TreecrownsError, ValueError):
    """A file is not a usable model checkpoint."""


class AnnotationError(TreecrownsError, ValueError):
    """Training or evaluation boxes are missing, malformed or inconsistent."""


class OutputError(TreecrownsError, OSError):
    """A result cannot be written where the user asked."""


class Cancelled(TreecrownsError):
    """The user stopped a running job; nothing half-done was kept."""

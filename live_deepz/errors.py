"""Exceptions that carry a message a user can act on.

Every error raised for bad user input derives from :class:`LiveDeepzError`; the CLI
prints its message (no traceback) and exits with status 1.
"""

from __future__ import annotations


class LiveDeepzError(Exception):
    """Base class: a problem the user can fix; the message says what and how."""


class ModelFileError(LiveDeepzError):
    """A model folder/file is missing, corrupt, foreign, of an unknown version or mismatched."""


class DPMRangeError(LiveDeepzError):
    """A requested refocus offset lies outside the model's trained axial range."""


class InputError(LiveDeepzError):
    """An image, stack or array given by the user has the wrong type, shape or values."""


class CameraError(LiveDeepzError):
    """The camera or microscope core failed (open, configure, or mid-stream)."""


def clause(message: object) -> str:
    """``message`` without its final full stop, to continue it with ``". Next sentence"``
    (no ``..`` when an inner message already ends a sentence)."""
    text = str(message).rstrip()
    return text[:-1].rstrip() if text.endswith(".") and not text.endswith("...") else text

"""Errors the core raises; front ends show their message to the user as is."""


class JTPError(Exception):
    """Base class: every error the core raises on purpose."""


class CheckpointError(JTPError):
    """A weights or tags file is missing, damaged, or does not fit a JTP model."""


class ModelNotFoundError(JTPError):
    """A model name or folder could not be resolved to files on disk (and could not be downloaded)."""


class DownloadError(JTPError):
    """A model file could not be downloaded; nothing partial was left behind."""


class ImageError(JTPError):
    """An image could not be read or has a shape the tagger cannot use."""


class TagTableError(JTPError):
    """A tag table (CSV of tag, category, implications) is missing or malformed."""


class UnknownTagError(JTPError):
    """A tag asked for by name is not in the model's vocabulary (the message lists close matches)."""

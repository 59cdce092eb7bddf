"""Rempart: hash, match, detect, find, take down -- a defence against NCII and deepfakes."""

from rempart.errors import RempartError

__version__ = "0.1.0"

__all__ = ["RempartError", "__version__"]

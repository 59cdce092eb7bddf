"""The versioned JSON API (``/v1``)."""

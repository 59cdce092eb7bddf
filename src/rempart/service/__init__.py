"""The HTTP service: ``rempart serve``. Routes are thin; the library does the work."""

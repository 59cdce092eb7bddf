"""Indexes for matching hashes.

:class:`PDQIndex` is an exact Hamming range index for 256-bit PDQ codes: every stored code
within the threshold is returned, adds and removals are visible to the next query, and 10M
codes load in seconds. Codes travel as ``uint8[n, 32]`` arrays; :func:`codes_from_hex` and
:func:`hex_from_codes` convert from and to the hex strings the store keeps.
"""

from rempart.index.hamming import (
    DEFAULT_THRESHOLD,
    IndexInputError,
    PDQIndex,
    codes_from_hex,
    hex_from_codes,
)

__all__ = ["DEFAULT_THRESHOLD", "IndexInputError", "PDQIndex", "codes_from_hex", "hex_from_codes"]

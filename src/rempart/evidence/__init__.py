"""Evidence beyond hash matches: how a file was made, and who may be in it.

- :mod:`rempart.evidence.provenance`: C2PA, IPTC/XMP digital source type, generator metadata;
- :mod:`rempart.evidence.watermark`: Stable Diffusion invisible watermarks (DWT-DCT);
- :mod:`rempart.evidence.detectors`: the operator's learned detectors (ONNX + manifest);
- :mod:`rempart.evidence.faces`: faces and embeddings, matched against enrolled people only.

A finding is *evidence of generation found*; no finding never means authentic. A face match
is a lead for a human, never an identification.
"""

from rempart.evidence.provenance import (
    Finding,
    ProvenanceProblem,
    ProvenanceReport,
    find_provenance,
)

__all__ = ["Finding", "ProvenanceProblem", "ProvenanceReport", "find_provenance"]

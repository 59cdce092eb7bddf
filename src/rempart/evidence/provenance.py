"""Evidence of generation in a file's own provenance metadata.

:func:`find_provenance` reads what a file says about where it came from: C2PA Content
Credentials (signed), the IPTC digital source type in XMP (unsigned), and the parameters
that image generators write (AUTOMATIC1111, ComfyUI, InvokeAI, NovelAI; unsigned).

A finding is *evidence of generation found*. The absence of findings means nothing: metadata
is stripped by almost every upload, screenshot and re-encode, so a file with no findings is
**not** authentic, only unlabelled. Unsigned metadata can also be forged; ``strength`` says
how much a finding is worth on its own.

Prompts may describe sexual content. They never appear in ``summary`` (which is shown in
lists and logs); they are kept, cut to :data:`MAX_PROMPT_CHARS`, in ``details`` under keys
starting with ``prompt``/``negative_prompt`` so a caller can hide them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

from rempart.errors import ConfigError
from rempart.evidence._c2pa import read_c2pa
from rempart.evidence._metadata import MAX_CHUNK_BYTES, Metadata, extract_metadata
from rempart.media.sniff import sniff_format

Source = Literal["c2pa", "iptc", "a1111", "comfyui", "invokeai", "novelai"]
#: ``strong``: a signed or tool-specific statement of generation; ``moderate``: a statement
#: of generation that is unsigned or signed by an unknown party; ``weak``: a statement whose
#: integrity check failed, or tool traces that did not parse; ``info``: provenance present but
#: no claim of generation.
Strength = Literal["strong", "moderate", "weak", "info"]

#: Prompt text kept in ``details`` (characters).
MAX_PROMPT_CHARS: Final = 2000
_MAX_ITEMS: Final = 50

IPTC_NS: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/"
#: IPTC digital source types that say the content was made by an algorithm (in whole or part).
GENERATIVE_SOURCE_TYPES: Final = frozenset(
    {
        "trainedAlgorithmicMedia",
        "compositeWithTrainedAlgorithmicMedia",
        "algorithmicMedia",
        "compositeSynthetic",
    }
)


@dataclass(frozen=True)
class Finding:
    """One piece of provenance. ``summary`` never contains prompt text."""

    source: Source
    summary: str
    details: dict[str, Any]
    strength: Strength

    def to_dict(self) -> dict[str, Any]:
        """The finding as plain JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class ProvenanceProblem:
    """Metadata that was present but could not be read (or was cut): reported, not raised."""

    source: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """The problem as ``{source, code, message}``."""
        return asdict(self)


@dataclass
class ProvenanceReport:
    """Everything :func:`find_provenance` found, and what it could not read."""

    findings: list[Finding] = field(default_factory=list)
    errors: list[ProvenanceProblem] = field(default_factory=list)

    @property
    def evidence_of_generation(self) -> bool:
        """Whether any finding states generation. ``False`` does **not** mean authentic."""
        return any(f.strength != "info" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return {
            "evidence_of_generation": self.evidence_of_generation,
            "findings": [f.to_dict() for f in self.findings],
            "errors": [e.to_dict() for e in self.errors],
        }


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PROMPT_CHARS else text[:MAX_PROMPT_CHARS] + "…[cut]"


def _dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (metadata is untrusted)."""
    return value if isinstance(value, dict) else {}


def short_source_type(value: str) -> str:
    """``trainedAlgorithmicMedia`` from the full IPTC URI or the short form."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


# --- C2PA -------------------------------------------------------------------------------


def _agent(action: dict[str, Any]) -> str | None:
    agent = action.get("softwareAgent")
    if isinstance(agent, dict):
        name, version = agent.get("name"), agent.get("version")
        return f"{name} {version}" if name and version else (str(name) if name else None)
    return str(agent) if agent else None


def _c2pa(data: bytes, fmt: Any, anchors: str | None, report: ProvenanceReport) -> None:
    res = read_c2pa(data, fmt, anchors)
    if res.error:
        report.errors.append(ProvenanceProblem("c2pa", *res.error))
    if res.manifest is None:
        return
    m = res.manifest
    sig = _dict(m.get("signature_info"))
    generators = [g.get("name") for g in m.get("claim_generator_info") or [] if isinstance(g, dict)]
    claim_generator = m.get("claim_generator") or ", ".join(str(g) for g in generators if g)
    actions = [
        {
            "action": a.get("action"),
            "digitalSourceType": a.get("digitalSourceType"),
            "softwareAgent": _agent(a),
        }
        for a in res.actions
    ]
    generative = sorted(
        {
            short_source_type(a["digitalSourceType"])
            for a in actions
            if isinstance(a["digitalSourceType"], str)
            and short_source_type(a["digitalSourceType"]) in GENERATIVE_SOURCE_TYPES
        }
    )
    details = {
        "validation": res.validation,
        "sdk_validation_state": res.sdk_state,
        "validation_failures": res.failures,
        "issuer": sig.get("issuer"),
        "signer_common_name": sig.get("common_name"),
        "signing_time": sig.get("time"),
        "claim_generator": claim_generator or None,
        "title": m.get("title"),
        "actions": actions,
        "generative_source_types": generative,
    }
    who = sig.get("issuer") or "an unknown issuer"
    if generative:
        strength: Strength = {"valid": "strong", "untrusted": "moderate"}.get(
            res.validation or "", "weak"
        )  # type: ignore[assignment]
        summary = (
            f"C2PA manifest ({res.validation}) signed by {who} declares "
            f"{', '.join(generative)}: evidence of generation"
        )
    else:
        strength = "info"
        summary = f"C2PA manifest ({res.validation}) signed by {who}; no generative source type"
    report.findings.append(Finding("c2pa", summary, details, strength))


# --- IPTC / XMP -------------------------------------------------------------------------

# Attribute form, element form, and rdf:resource form of Iptc4xmpExt:DigitalSourceType.
_DST_RE: Final = re.compile(
    r"""(?:[\w.-]{1,40}:)?DigitalSourceType\s*=\s*["']([^"'<>]{1,300})["']"""
    r"""|<(?:[\w.-]{1,40}:)?DigitalSourceType\s*>\s*([^<]{1,300}?)\s*<"""
    r"""|<(?:[\w.-]{1,40}:)?DigitalSourceType\s[^>]{0,300}?resource\s*=\s*["']([^"'<>]{1,300})""",
)


def _iptc(meta: Metadata, report: ProvenanceReport) -> None:
    seen: list[str] = []
    for packet in meta.xmp:
        for match in _DST_RE.finditer(packet[:MAX_CHUNK_BYTES]):
            value = next(g for g in match.groups() if g)
            if value not in seen and len(seen) < _MAX_ITEMS:
                seen.append(value)
    for value in seen:
        short = short_source_type(value)
        if short in GENERATIVE_SOURCE_TYPES:
            summary = (
                f"XMP declares IPTC digital source type {short} (unsigned): evidence of generation"
            )
            strength: Strength = "moderate"
        else:
            summary = f"XMP declares IPTC digital source type {short} (unsigned, not generative)"
            strength = "info"
        details = {"digital_source_type": short, "value": value[:300], "signed": False}
        report.findings.append(Finding("iptc", summary, details, strength))


# --- AUTOMATIC1111 ----------------------------------------------------------------------

# The parameter line, as A1111 itself parses it (modules/infotext_utils.py re_param), with
# bounded repeats: A1111's unbounded ``[\w ]+`` backtracks quadratically on a long line
# without a colon (a 1 MB chunk took minutes).
_A1111_PARAM: Final = re.compile(
    r'\s*([\w ]{1,64}):\s*("(?:\\.|[^\\"]){1,8192}"|[^,]{0,8192})(?:,|$)'
)
#: Longest parameter line parsed (real ones, with LoRA and embedding hashes, are < 10 kB).
_A1111_MAX_LINE: Final = 65_536
_A1111_IMG2IMG: Final = ("Init image hash", "Conditional mask weight", "Mask blur", "Inpaint area")
_A1111_INPAINT: Final = ("Mask blur", "Inpaint area", "Masked area padding", "Mask mode")
_A1111_KEYS: Final = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Seed",
    "Size",
    "Model",
    "Model hash",
    "VAE",
    "Denoising strength",
    "Version",
    "Lora hashes",
)


def parse_a1111(text: str) -> dict[str, Any] | None:
    """AUTOMATIC1111 "infotext" (prompt, ``Negative prompt:``, parameter line), or ``None``."""
    lines = text.strip().split("\n")
    if not lines:
        return None
    params_line = lines[-1]
    if len(params_line) > _A1111_MAX_LINE or not (
        "Steps:" in params_line or "Sampler:" in params_line
    ):
        return None
    params = {k.strip(): v.strip().strip('"') for k, v in _A1111_PARAM.findall(params_line)}
    if "Steps" not in params and "Sampler" not in params:
        return None
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in lines[:-1]:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:") :].strip()
        target.append(line)
    return {
        "prompt": "\n".join(prompt_lines).strip(),
        "negative_prompt": "\n".join(negative_lines).strip(),
        "params": params,
    }


def _a1111(meta: Metadata, report: ProvenanceReport) -> None:
    for key in ("parameters", "exif:UserComment"):
        text = meta.texts.get(key)
        if not text:
            continue
        parsed = parse_a1111(text[:MAX_CHUNK_BYTES])
        if parsed is None:
            continue
        params: dict[str, str] = parsed["params"]
        hires = any(k.startswith("Hires") for k in params)
        inpainting = any(k in params for k in _A1111_INPAINT)
        img2img = (
            inpainting
            or any(k in params for k in _A1111_IMG2IMG)
            or ("Denoising strength" in params and not hires)
        )
        mode = "inpainting" if inpainting else ("img2img" if img2img else "txt2img")
        details = {
            "metadata_key": key,
            "mode": mode,
            "derived_from_input_image": img2img,
            "parameters": {k: params[k][:300] for k in list(params)[:_MAX_ITEMS]},
            "prompt_text_truncated": _cut(parsed["prompt"]),
            "negative_prompt_text_truncated": _cut(parsed["negative_prompt"]),
        }
        model = params.get("Model") or params.get("Model hash") or "unknown model"
        summary = f"AUTOMATIC1111 generation parameters ({mode}, model {model[:100]})"
        if img2img:
            summary += ": made from an input image"
        report.findings.append(Finding("a1111", summary, details, "strong"))
        return


# --- ComfyUI ----------------------------------------------------------------------------

_COMFY_IMAGE_INPUTS: Final = ("LoadImage", "LoadImageMask", "ImageToLatent", "VAEEncode")
_COMFY_INPAINT: Final = ("VAEEncodeForInpaint", "InpaintModelConditioning", "SetLatentNoiseMask")


def _json(text: str, source: str, key: str, report: ProvenanceReport) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        report.errors.append(
            ProvenanceProblem(source, "malformed_json", f"{key!r} is not valid JSON ({exc})"[:300])
        )
        return None


def _comfyui(meta: Metadata, report: ProvenanceReport) -> None:
    prompt_text, workflow_text = meta.texts.get("prompt"), meta.texts.get("workflow")
    node_types: list[str] = []
    checkpoints: list[str] = []
    samplers: list[dict[str, Any]] = []
    prompts: list[str] = []
    parsed_any = False
    # "prompt" alone is a common word; only JSON-looking text is taken as ComfyUI's.
    if prompt_text and prompt_text.lstrip().startswith("{"):
        graph = _json(prompt_text, "comfyui", "prompt", report)
        if isinstance(graph, dict):
            for node in list(graph.values())[:10_000]:
                if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
                    continue
                parsed_any = True
                ctype = node["class_type"]
                node_types.append(ctype)
                inputs = _dict(node.get("inputs"))
                for k in ("ckpt_name", "unet_name", "model_name", "lora_name"):
                    if isinstance(inputs.get(k), str) and len(checkpoints) < _MAX_ITEMS:
                        checkpoints.append(inputs[k][:200])
                if "sampler" in ctype.lower() and len(samplers) < _MAX_ITEMS:
                    samplers.append(
                        {
                            k: inputs[k]
                            for k in ("sampler_name", "scheduler", "steps", "cfg", "denoise")
                            if isinstance(inputs.get(k), (str, int, float))
                        }
                    )
                if isinstance(inputs.get("text"), str) and len(prompts) < 10:
                    prompts.append(_cut(inputs["text"]))
    if workflow_text and workflow_text.lstrip().startswith("{"):
        wf = _json(workflow_text, "comfyui", "workflow", report)
        nodes = wf.get("nodes") if isinstance(wf, dict) else None
        if isinstance(nodes, list):
            wf_types = [
                n["type"]
                for n in nodes[:10_000]
                if isinstance(n, dict) and isinstance(n.get("type"), str)
            ]
            if wf_types:
                parsed_any = True
                if not node_types:
                    node_types = wf_types
    if not parsed_any:
        return
    counts: dict[str, int] = {}
    for t in node_types:
        counts[t[:100]] = counts.get(t[:100], 0) + 1
    from_image = any(t in _COMFY_IMAGE_INPUTS for t in counts)
    inpainting = any(t in _COMFY_INPAINT for t in counts)
    details = {
        "node_types": dict(sorted(counts.items())[:200]),
        "models": checkpoints,
        "samplers": samplers,
        "derived_from_input_image": from_image,
        "inpainting": inpainting,
        "prompt_texts_truncated": prompts,
    }
    summary = f"ComfyUI workflow with {len(node_types)} nodes"
    if checkpoints:
        summary += f" (model {checkpoints[0][:100]})"
    if from_image:
        summary += ": loads an input image (img2img" + ("/inpainting)" if inpainting else ")")
    report.findings.append(Finding("comfyui", summary, details, "strong"))


# --- InvokeAI ---------------------------------------------------------------------------


def _invokeai(meta: Metadata, report: ProvenanceReport) -> None:
    keys = [
        k
        for k in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "dream")
        if k in meta.texts
    ]
    if not keys:
        return
    details: dict[str, Any] = {"metadata_keys": keys}
    mode: str | None = None
    model: str | None = None
    md = meta.texts.get("invokeai_metadata") or meta.texts.get("sd-metadata")
    if md is not None:
        key = "invokeai_metadata" if "invokeai_metadata" in meta.texts else "sd-metadata"
        obj = _json(md, "invokeai", key, report)
        if isinstance(obj, dict):
            image = _dict(obj.get("image"))
            mode = obj.get("generation_mode") or image.get("type")
            m = obj.get("model")
            model = (
                m.get("name") or m.get("model_name")
                if isinstance(m, dict)
                else (m or obj.get("model_weights"))
            )
            prompt = obj.get("positive_prompt") or image.get("prompt")
            if isinstance(prompt, list):  # sd-metadata: [{"prompt": ..., "weight": ...}]
                prompt = " ".join(str(p.get("prompt", "")) for p in prompt if isinstance(p, dict))
            if isinstance(prompt, str):
                details["prompt_text_truncated"] = _cut(prompt)
            if isinstance(obj.get("negative_prompt"), str):
                details["negative_prompt_text_truncated"] = _cut(obj["negative_prompt"])
            for k in ("steps", "scheduler", "seed", "cfg_scale", "strength", "width", "height"):
                v = obj.get(k, image.get(k))
                if isinstance(v, (str, int, float)):
                    details[k] = v
    if "dream" in meta.texts and "prompt_text_truncated" not in details:
        details["dream_command_truncated"] = _cut(meta.texts["dream"])
        if " -I " in meta.texts["dream"] or "--init_img" in meta.texts["dream"]:
            mode = mode or "img2img"
    mode_s = str(mode)[:50] if mode else "unknown mode"
    from_image = any(w in mode_s.lower() for w in ("img2img", "inpaint", "outpaint", "canvas"))
    details["mode"] = mode_s
    details["derived_from_input_image"] = from_image
    details["model"] = str(model)[:200] if model else None
    summary = f"InvokeAI generation metadata ({mode_s}" + (
        f", model {str(model)[:100]})" if model else ")"
    )
    if from_image:
        summary += ": made from an input image"
    report.findings.append(Finding("invokeai", summary, details, "strong"))


# --- NovelAI ----------------------------------------------------------------------------


def _novelai(meta: Metadata, report: ProvenanceReport) -> None:
    software = meta.texts.get("Software") or meta.texts.get("exif:Software") or ""
    if software.strip() != "NovelAI":
        return
    details: dict[str, Any] = {"software": "NovelAI", "source": meta.texts.get("Source", "")[:200]}
    strength: Strength = "strong"
    comment = meta.texts.get("Comment")
    mode = "unknown mode"
    if comment is None:
        strength = "moderate"  # just a Software tag, easy to write by hand
    else:
        obj = _json(comment, "novelai", "Comment", report)
        if isinstance(obj, dict):
            request = obj.get("request_type")
            mode = str(request)[:50] if request else "txt2img"
            for k in ("steps", "sampler", "seed", "scale", "strength", "noise", "width", "height"):
                if isinstance(obj.get(k), (str, int, float)):
                    details[k] = obj[k]
            if isinstance(obj.get("prompt"), str):
                details["prompt_text_truncated"] = _cut(obj["prompt"])
            if isinstance(obj.get("uc"), str):
                details["negative_prompt_text_truncated"] = _cut(obj["uc"])
        else:
            strength = "moderate"
    from_image = any(w in mode.lower() for w in ("img2img", "infill", "inpaint"))
    details["mode"] = mode
    details["derived_from_input_image"] = from_image
    summary = f"NovelAI generation metadata ({mode})"
    if from_image:
        summary += ": made from an input image"
    report.findings.append(Finding("novelai", summary, details, strength))


# --- entry point ------------------------------------------------------------------------


def check_trust_anchors(pem: str) -> None:
    """Raise :class:`~rempart.errors.ConfigError` unless ``pem`` holds X.509 certificates."""
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except ValueError as exc:
        raise ConfigError(
            f"the C2PA trust anchors are not PEM certificates ({exc})",
            hint="point the trust anchors setting at a PEM file of CA certificates",
        ) from exc
    if not certs:  # pragma: no cover - load_pem_x509_certificates raises on none
        raise ConfigError("the C2PA trust anchors file holds no certificate")


def find_provenance(data: bytes, *, trust_anchors_pem: str | None = None) -> ProvenanceReport:
    """Provenance evidence of generation in ``data`` (an image or video file's bytes).

    ``trust_anchors_pem`` is the PEM text of the CA certificates the operator trusts for
    C2PA; without it every intact C2PA manifest is ``untrusted``. Nothing is fetched.

    Never raises on bad metadata: unreadable chunks, malformed JSON and broken manifests
    become entries in ``errors``. Raises :class:`~rempart.errors.ConfigError` only when
    ``trust_anchors_pem`` is not PEM certificates (an operator mistake, not the file's).
    """
    if trust_anchors_pem:
        check_trust_anchors(trust_anchors_pem)
    report = ProvenanceReport()
    fmt = sniff_format(data)
    _c2pa(data, fmt, trust_anchors_pem, report)
    meta = extract_metadata(data, fmt)
    for code, message in meta.problems:
        report.errors.append(ProvenanceProblem("metadata", code, message))
    for step in (_iptc, _a1111, _comfyui, _invokeai, _novelai):
        step(meta, report)
    return report

"""Reading uploads into memory, within limits, without touching the disk.

FastAPI's ``UploadFile`` spools large files to a temporary file; media must not be written
anywhere, so uploads are read here: a raw body, or the first file part of a
``multipart/form-data`` body, parsed in memory.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from rempart.errors import RempartError
from rempart.service.problems import PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the upload is {int(declared)} bytes; the limit is {limit}",
            hint="send a smaller file, or raise REMPART_LIMITS__MAX_BYTES",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the upload is over the limit of {limit} bytes",
                hint="send a smaller file, or raise REMPART_LIMITS__MAX_BYTES",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _multipart_file(body: bytes, boundary: bytes) -> bytes:
    parts: list[dict[str, object]] = []
    current: dict[str, object] = {}
    header_field = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        current.clear()
        current["headers"] = {}
        current["data"] = bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers = current["headers"]
        assert isinstance(headers, dict)
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        buf = current["data"]
        assert isinstance(buf, bytearray)
        buf.extend(data[start:end])

    def on_part_end() -> None:
        parts.append(dict(current))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:
        raise RempartError(
            f"the multipart body is malformed: {e}",
            code="bad_multipart",
            hint="send the file as a form field named `file`",
        ) from None
    for part in parts:
        headers = part["headers"]
        assert isinstance(headers, dict)
        disposition = headers.get(b"content-disposition", b"")
        _, params = parse_options_header(disposition)
        if params.get(b"name") == b"file" or b"filename" in params:
            data = part["data"]
            assert isinstance(data, bytearray)
            return bytes(data)
    raise RempartError(
        "the multipart body has no file part",
        code="bad_multipart",
        hint="send the file as a form field named `file`",
    )


async def read_upload(request: Request, limit: int) -> bytes:
    """The uploaded file: a raw body, or the ``file`` part of a multipart form."""
    body = await read_body(request, limit)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise RempartError(
                "multipart body without a boundary",
                code="bad_multipart",
                hint="let your HTTP client build the multipart body",
            )
        return _multipart_file(body, boundary)
    return body

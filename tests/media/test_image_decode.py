"""decode_image: formats, modes, orientation, draft decoding, limits and hostile input."""

from __future__ import annotations

import contextlib
import io
import struct
import time
import warnings
import zlib

import numpy as np
import pillow_heif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageOps

from rempart.errors import MediaError
from rempart.hashing import pdq_distance, pdq_hash
from rempart.media import MediaFormat, decode_image, read_media_file, to_rgb
from rempart.settings import MediaLimits

LIMITS = MediaLimits()


def _code(data: bytes, limits: MediaLimits = LIMITS) -> str:
    with pytest.raises(MediaError) as info:
        decode_image(data, limits)
    assert info.value.message and info.value.hint, "errors must say what and what to do"
    return info.value.code


def _pdq(rgb: np.ndarray) -> str:
    return pdq_hash(np.ascontiguousarray(rgb)).hex


# -- formats --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pil_format", "fmt", "lossless"),
    [
        ("JPEG", MediaFormat.JPEG, False),
        ("PNG", MediaFormat.PNG, True),
        ("WEBP", MediaFormat.WEBP, False),
        ("GIF", MediaFormat.GIF, False),
        ("BMP", MediaFormat.BMP, True),
        ("TIFF", MediaFormat.TIFF, True),
        ("HEIF", MediaFormat.HEIF, False),
        ("AVIF", MediaFormat.AVIF, False),
    ],
)
def test_each_format_decodes_to_its_pixels(photo, encode, pil_format, fmt, lossless):
    assert pillow_heif  # registers the HEIF encoder used by encode()
    rgb = photo("coffee")  # 600 x 400
    data = encode(rgb, pil_format)
    image = decode_image(data, LIMITS, draft_min_side=None)
    assert image.format is fmt
    assert (image.width, image.height) == (600, 400)
    assert image.rgb.shape == (400, 600, 3) and image.rgb.dtype == np.uint8
    assert image.rgb.flags.c_contiguous
    diff = np.abs(image.rgb.astype(int) - rgb.astype(int)).mean()
    assert diff == 0 if lossless else diff < 12
    assert pdq_distance(_pdq(image.rgb), _pdq(rgb)) <= 16


def test_jpeg_draft_decodes_small_but_reports_full_size(photo, encode):
    big = np.asarray(Image.fromarray(photo("chelsea")).resize((3200, 2400)))
    data = encode(big, "JPEG", quality=90)
    image = decode_image(data, LIMITS, draft_min_side=256)
    assert (image.width, image.height) == (3200, 2400)
    assert image.rgb.shape == (300, 400, 3)  # 1/8 scale: both sides still >= 256
    full = decode_image(data, LIMITS, draft_min_side=None)
    assert full.rgb.shape == (2400, 3200, 3)
    assert pdq_distance(_pdq(image.rgb), _pdq(full.rgb)) <= 10
    assert min(decode_image(data, LIMITS, draft_min_side=512).rgb.shape[:2]) >= 512


def test_other_formats_are_box_reduced(photo, encode):
    big = np.asarray(Image.fromarray(photo("chelsea")).resize((1804, 1200)))
    image = decode_image(encode(big, "PNG"), LIMITS, draft_min_side=256)
    assert (image.width, image.height) == (1804, 1200)
    assert image.rgb.shape == (300, 451, 3)  # reduced by 4: the short side stays >= 256
    # Like the JPEG draft, a few bits from the full-size hash (up to ~12 on smooth photos).
    assert pdq_distance(_pdq(image.rgb), _pdq(big)) <= 10


def test_animation_gives_its_first_frame_and_frame_count(encode):
    frames = [Image.new("RGB", (32, 24), c) for c in [(200, 30, 30), (30, 200, 30), (0, 0, 0)]]
    for fmt in ("GIF", "WEBP", "PNG"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
        image = decode_image(data, LIMITS)
        assert image.n_frames == 3, fmt
        assert np.abs(image.rgb.astype(int) - (200, 30, 30)).max() <= 8, fmt
        too_few = MediaLimits(max_frames=2)
        assert _code(data, too_few) == "too_many_frames", fmt


# -- modes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "La", "P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV"]
)
def test_every_pillow_mode_converts_to_nearly_the_same_hash(photo, mode):
    rgb = photo("coffee")
    image = Image.fromarray(rgb).convert(mode)
    out = np.asarray(to_rgb(image))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert pdq_distance(_pdq(out), _pdq(rgb)) <= 16, mode


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64)


@pytest.mark.parametrize(
    ("label", "make", "fmt"),
    [
        # 16-bit grey: Pillow's own conversion would clip nearly everything to white.
        ("I;16 png", lambda g: Image.fromarray((g * 257).astype(np.uint16)), "PNG"),
        ("I tiff, 0..255000", lambda g: Image.fromarray((g * 1000).astype(np.int32), "I"), "TIFF"),
        ("F tiff, 0..1", lambda g: Image.fromarray((g / 255).astype(np.float32), "F"), "TIFF"),
        ("F tiff, 0..255", lambda g: Image.fromarray(g.astype(np.float32), "F"), "TIFF"),
        (
            "F tiff, -1..1",
            lambda g: Image.fromarray((g / 127.5 - 1).astype(np.float32), "F"),
            "TIFF",
        ),
    ],
)
def test_wide_range_modes_are_normalised_not_clipped(photo, label, make, fmt):
    rgb = photo("coffee")
    grey = _grey(rgb)
    buf = io.BytesIO()
    make(grey).save(buf, fmt)
    image = decode_image(buf.getvalue(), LIMITS)
    assert image.mode in ("I;16", "I", "F", "I;16B"), label
    back = image.rgb[..., 0].astype(np.float64)
    assert np.abs(back - grey).mean() <= 1.5, label
    assert pdq_distance(_pdq(image.rgb), _pdq(rgb)) <= 12, label


def test_lab_goes_through_a_colour_transform(photo):
    rgb = photo("coffee")
    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    lab = ImageCms.applyTransform(Image.fromarray(rgb), to_lab)
    buf = io.BytesIO()
    lab.save(buf, "TIFF")
    image = decode_image(buf.getvalue(), LIMITS)
    assert image.mode == "LAB"
    assert np.abs(image.rgb.astype(int) - rgb.astype(int)).mean() < 6
    assert pdq_distance(_pdq(image.rgb), _pdq(rgb)) <= 10


def test_alpha_is_composited_over_white(encode):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = (0, 0, 200)
    rgba[:, :20, 3] = 0  # left half fully transparent (black-ish underneath)
    rgba[:, 20:, 3] = 255
    rgba[:10, 20:, 3] = 128
    image = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), LIMITS)
    assert (image.rgb[:, :20] == 255).all()
    assert (image.rgb[20:, 20:] == (0, 0, 200)).all()
    half = image.rgb[0, 30].astype(int)
    assert abs(half[0] - 127) <= 2 and abs(half[2] - 227) <= 2


def test_palette_transparency_is_composited(encode):
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 1  # the red index is transparent
    out = decode_image(encode(image, "PNG", transparency=1), LIMITS)
    assert (out.rgb == 255).all()


# -- orientation ----------------------------------------------------------------------------

# EXIF orientation -> the transpose that a viewer applies to make the stored image upright.
_VIEWER = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_INVERSE = {
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_upright_pixels(photo, orientation):
    upright = Image.fromarray(photo("coffee"))  # 600 x 400, landscape, not symmetric
    stored = upright
    if orientation != 1:
        undo = _VIEWER[orientation]
        stored = upright.transpose(_INVERSE.get(undo, undo))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "PNG", exif=exif.tobytes())
    image = decode_image(buf.getvalue(), LIMITS)
    assert image.orientation == orientation
    assert (image.width, image.height) == (600, 400)
    assert np.array_equal(image.rgb, np.asarray(upright))


def test_reference_exif_rotations_decode_upright(pdq_ref):
    folder = pdq_ref / "reg-test-input" / "exif-rotn"
    hashes = {}
    for orientation in (1, 3, 6, 8):
        path = folder / f"exif-rotn-{orientation}.jpg"
        image = decode_image(read_media_file(path, LIMITS), LIMITS)
        portrait = orientation in (6, 8)
        assert (image.height > image.width) == portrait, orientation
        assert (image.rgb.shape[0] > image.rgb.shape[1]) == portrait
        # Upright, the lamp-lit wall is at the top: the top third is the brightest side.
        grey = image.rgb.mean(axis=2)
        h, w = grey.shape
        sides = {
            "top": grey[: h // 3].mean(),
            "bottom": grey[-h // 3 :].mean(),
            "left": grey[:, : w // 3].mean(),
            "right": grey[:, -w // 3 :].mean(),
        }
        assert max(sides, key=sides.__getitem__) == "top", (orientation, sides)
        # Same as Pillow's own exif_transpose at full resolution.
        reference = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        hashes[orientation] = _pdq(image.rgb)
        assert pdq_distance(hashes[orientation], _pdq(reference)) <= 10
    # The four files are four different shots of the desk (two landscape, two portrait,
    # framed differently), so their PDQ hashes are not close to one another; what must hold
    # is that each is read upright, which the checks above establish.


# -- Meta's modes images --------------------------------------------------------------------


def test_reference_modes_all_hash_close_to_the_original(pdq_ref):
    folder = pdq_ref / "misc-images" / "modes"
    original = _pdq(decode_image((folder / "original.jpg").read_bytes(), LIMITS).rgb)
    checked = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".md" or path.name == "LAB.tiff":
            continue
        image = decode_image(read_media_file(path, LIMITS), LIMITS)
        assert pdq_distance(_pdq(image.rgb), original) <= 10, path.name
        checked.append(path.name)
    assert len(checked) >= 13


def test_reference_zero_byte_lab_tiff_is_an_empty_file(pdq_ref):
    path = pdq_ref / "misc-images" / "modes" / "LAB.tiff"
    assert _code(read_media_file(path, LIMITS)) == "empty_file"


# -- bad input ------------------------------------------------------------------------------


def test_zero_bytes_is_empty_file():
    assert _code(b"") == "empty_file"


def test_text_named_jpg_is_unsupported(tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_text("this is a text file with a picture's name\n")
    with pytest.raises(MediaError) as info:
        decode_image(read_media_file(path, LIMITS), LIMITS)
    assert info.value.code == "unsupported_format"
    assert "text" in info.value.message


@pytest.mark.parametrize("pil_format", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_truncated_files(photo, encode, pil_format):
    data = encode(photo("chelsea"), pil_format)
    assert _code(data[: len(data) * 2 // 3]) == "truncated"


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's remarks on the broken TIFF
@pytest.mark.parametrize("pil_format", ["JPEG", "PNG", "GIF", "TIFF"])
def test_garbage_after_a_valid_magic_is_corrupt(encode, pil_format):
    data = encode(Image.new("RGB", (8, 8)), pil_format)
    garbage = np.random.default_rng(7).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    magic = {"JPEG": 3, "PNG": 8, "GIF": 6, "TIFF": 4}[pil_format]
    assert _code(data[:magic] + garbage) == "corrupt"


def test_over_the_byte_limit_is_too_large(encode):
    data = encode(Image.new("RGB", (64, 64)), "PNG")
    assert _code(data, MediaLimits(max_bytes=len(data) - 1)) == "too_large"


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header declares ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def test_png_bomb_is_refused_from_its_header():
    data = _png_declaring(30000, 30000)
    assert len(data) < 5000
    start = time.perf_counter()
    with pytest.raises(MediaError) as info:
        decode_image(data, LIMITS)
    assert time.perf_counter() - start < 1.0
    assert info.value.code == "too_many_pixels"
    assert "900,000,000" in info.value.message


@pytest.mark.parametrize("declared", [(12000, 12000), (9000, 9000)])
def test_pillow_bomb_check_never_just_warns(declared):
    # 144 M pixels: between our limit (100 M) and twice it, where Pillow only *warns*;
    # 81 M pixels with a 50 M limit: under Pillow's default ceiling, refused by ours.
    limits = MediaLimits(max_pixels=100_000_000 if declared[0] == 12000 else 50_000_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _code(_png_declaring(*declared), limits) == "too_many_pixels"
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def _gif_with_frames(n: int) -> bytes:
    """A 1x1 GIF of ``n`` frames, written directly (10,000 frames in ~230 KB, instantly)."""
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frame = (
        b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 0.1 s
        + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, 1, 1, 0)  # image descriptor
        + b"\x02\x02\x4c\x01\x00"
    )  # LZW data for one pixel of colour 1
    return header + loop + frame * n + b";"


def test_small_handmade_gif_decodes():
    image = decode_image(_gif_with_frames(3), LIMITS)
    assert image.n_frames == 3
    assert (image.rgb == 255).all()  # colour 1 of the palette is white


def test_gif_with_10000_frames_is_refused_quickly():
    data = _gif_with_frames(10_000)
    start = time.perf_counter()
    assert _code(data) == "too_many_frames"
    assert time.perf_counter() - start < 0.5


def test_gif_frames_are_counted_without_walking_the_whole_file():
    from rempart.media.image import _count_gif_frames

    data = _gif_with_frames(10_000)
    assert _count_gif_frames(data, stop_after=10**9) == 10_000
    assert _count_gif_frames(data, stop_after=5) == 6  # stops as soon as the limit is passed
    assert _count_gif_frames(data[:62], stop_after=10) == 1  # cut short: counts what is there


def test_pixel_limit_applies_to_real_images(encode):
    data = encode(Image.new("RGB", (200, 100)), "PNG")
    assert _code(data, MediaLimits(max_pixels=19_999)) == "too_many_pixels"
    assert decode_image(data, MediaLimits(max_pixels=20_000)).width == 200


def test_video_bytes_are_not_an_image():
    data = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 32
    assert _code(data) == "unsupported_format"


# -- fuzzing: nothing but MediaError may come out ---------------------------------------------

_MAGICS = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"RIFF\x10\x00\x00\x00WEBP",
    b"II*\x00",
    b"MM\x00*",
    b"BM" + b"\x00" * 12 + b"\x28\x00\x00\x00",
    b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif",
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's remarks on broken EXIF/tags
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(magic=st.sampled_from(_MAGICS), tail=st.binary(max_size=600))
def test_fuzz_random_bytes_after_magic(magic, tail):
    with contextlib.suppress(MediaError):
        decode_image(magic + tail, LIMITS)


@pytest.fixture(scope="module")
def valid_files() -> list[bytes]:
    rng = np.random.default_rng(3)
    base = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    out = []
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF"):
        buf = io.BytesIO()
        base.save(buf, fmt)
        out.append(buf.getvalue())
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    which=st.integers(0, 6),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=6),
)
def test_fuzz_damaged_real_files(valid_files, which, cut, flips):
    data = bytearray(valid_files[which])
    for where, xor in flips:
        data[int(where * (len(data) - 1))] ^= xor
    data = data[: max(1, int(len(data) * cut))] if cut < 0.98 else data
    try:
        image = decode_image(bytes(data), LIMITS)
    except MediaError:
        return
    assert image.rgb.ndim == 3 and image.rgb.shape[2] == 3

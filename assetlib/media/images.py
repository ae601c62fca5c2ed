"""Safe image decoding (byte cap, allowed formats, decompression-bomb limit) and compositing onto white."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from assetlib.vocab import IMAGE_FORMATS

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000  # a 6000×6000 photo passes; decompression bombs do not
BACKGROUND = (255, 255, 255)  # renders are composited onto this at index and at query time alike


class ImageError(ValueError):
    """An image that cannot be used, with the reason in plain words."""


class NotAnImage(ImageError):
    """Bytes that are none of the accepted image formats (an upload of the wrong kind)."""


def read_image_bytes(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """An image file's bytes, refusing one over the byte cap before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(f"{path} is {size:,} bytes, over the {max_bytes:,}-byte limit")
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def decode_image(
    source: bytes | str | Path,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode PNG/JPEG/WEBP/BMP bytes or a file into a fully loaded PIL image, or raise ImageError."""
    data = read_image_bytes(source, max_bytes) if isinstance(source, (str, Path)) else bytes(source)
    if not data:
        raise ImageError("empty image (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"image is {len(data):,} bytes, over the {max_bytes:,}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"image is {width}×{height} pixels, over the {max_pixels:,}-pixel limit")
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"refused a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        kind = sniff_format(data)
        if kind is not None:
            raise ImageError(f"corrupt or truncated {kind} image") from exc
        raise NotAnImage(f"not a {'/'.join(IMAGE_FORMATS)} image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from exc
    return image


def sniff_format(data: bytes) -> str | None:
    """The allowed format whose signature `data` starts with, if any (to tell corrupt from foreign)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    """RGB image with any transparency composited onto the fixed white background."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def load_rgb(source: bytes | str | Path, **limits: int) -> Image.Image:
    """Decode safely and composite onto white: what every encoder receives."""
    return to_rgb_on_white(decode_image(source, **limits))


def as_rgb(image: Image.Image | str | Path) -> Image.Image:
    """An encoder's input as RGB on white: a decoded image composited, a file decoded safely first."""
    return to_rgb_on_white(image) if isinstance(image, Image.Image) else load_rgb(image)

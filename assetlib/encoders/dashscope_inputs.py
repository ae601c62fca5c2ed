"""What may be handed to the DashScope SDK: texts it will not take for files, images under the size limit.

The SDK (dashscope 2.x, `utils/oss_utils.check_and_upload_local`) uploads to Alibaba storage, behind
the caller's back, every `text`, `image`, `video` or `audio` value that starts with `file://` or
`oss://`, or that names an existing file once `~` is expanded (relative to the working directory
too). A query like `~/notes.txt` would upload that file. Texts that could be taken so are sent
with a leading space (the text is the same to the model; no such file exists), and image
references are only ever data URIs or http(s) URLs.
"""

from __future__ import annotations

import base64
import io
import logging
import os

from PIL import Image

from assetlib.encoders.base import EncoderError
from assetlib.media.images import to_rgb_on_white

log = logging.getLogger(__name__)

_SCHEMES = ("file:", "oss:")
JPEG_QUALITIES = (92, 85, 75, 60)
MIN_SIDE = 64  # never shrink a view below this to fit a byte limit


def names_a_local_file(value: str) -> bool:
    """Whether the SDK could take a string for a local file or a storage object and upload it."""
    if value.lower().startswith(_SCHEMES):
        return True
    if value.startswith(("http://", "https://", "data:")):
        return False
    try:
        return os.path.exists(os.path.expanduser(value))
    except (OSError, ValueError):  # an over-long or NUL-holding string is no path either
        return False


def defuse_text(text: str) -> str:
    """The text as sent: unchanged, or with leading spaces until nothing can read it as a file."""
    sent = text
    while names_a_local_file(sent):
        sent = " " + sent
    if sent != text:
        log.warning("a text that names a local file or storage object is sent as text, never uploaded")
    return sent


def check_reference(ref: str) -> str:
    """An image reference for the SDK: a data URI or an http(s) URL, anything else refused."""
    if not ref.startswith(("data:image/", "https://", "http://")) or names_a_local_file(ref):
        raise EncoderError(f"refusing to send {ref[:60]!r} as an image: only data URIs and http(s) URLs")
    return ref


def _encoded(image: Image.Image, kind: str, quality: int | None = None) -> bytes:
    buffer = io.BytesIO()
    if kind == "PNG":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def to_data_uri(image: Image.Image, max_bytes: int | None = None) -> str:
    """A data URI of an RGB image (RGBA composited onto white), kept under `max_bytes` when given.

    PNG first (renders compress well and stay exact); over the limit, JPEG at falling qualities;
    still over, the image shrinks by a quarter at a time. The limit applies to the URI's length, a
    little stricter than to the decoded bytes, so the provider's per-image limit holds either way.
    """
    rgb = to_rgb_on_white(image)

    def uri(kind: str, data: bytes) -> str:
        return f"data:image/{kind.lower()};base64," + base64.b64encode(data).decode("ascii")

    first = uri("PNG", _encoded(rgb, "PNG"))
    if max_bytes is None or len(first) <= max_bytes:
        return first
    current = rgb
    while True:
        for quality in JPEG_QUALITIES:
            candidate = uri("JPEG", _encoded(current, "JPEG", quality))
            if len(candidate) <= max_bytes:
                log.debug(
                    "view re-encoded to fit %d bytes: %dx%d JPEG q%d", max_bytes, *current.size, quality
                )
                return candidate
        width, height = current.size
        if min(width, height) * 3 // 4 < MIN_SIDE:
            raise EncoderError(f"cannot fit a {rgb.size[0]}x{rgb.size[1]} view under {max_bytes:,} bytes")
        current = current.resize((width * 3 // 4, height * 3 // 4), Image.Resampling.LANCZOS)

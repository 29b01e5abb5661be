"""Images into the server: uploads, base64 (or ``data:`` URLs) and, when allowed, ``http(s)`` URLs.

All three end up as encoded bytes; :meth:`ImageIntake.check` reads only the header to refuse an image
over the pixel limit (HTTP 413) before anything is decoded, and :meth:`ImageIntake.decode` decodes it
off the event loop into a :class:`~sam3_core.images.LoadedImage`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from sam3_core.errors import ImageError
from sam3_core.images import LoadedImage, load_image
from serving.http.errors import ApiError, TooLarge
from serving.http.schemas import ImageSpec
from serving.http.urlfetch import AddressPolicy, UrlFetcher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageIntake:
    """Limits for incoming images (see :class:`serving.config.ServeSettings`)."""

    max_pixels: int
    max_bytes: int
    allow_urls: bool = False
    url_max_bytes: int = 20 << 20
    url_timeout_s: float = 10.0
    url_allow_networks: tuple[str, ...] = ()

    async def bytes_of(self, spec: ImageSpec) -> bytes:
        """The encoded image of a JSON ``image`` field."""
        if spec.base64 is not None:
            return decode_base64(spec.base64, self.max_bytes)
        assert spec.url is not None
        return await self.fetch(spec.url)

    async def fetch(self, url: str) -> bytes:
        """GET ``url`` under the address policy, size cap and total deadline (:mod:`serving.http.urlfetch`)."""
        if not self.allow_urls:
            raise ApiError(400, "image URLs are disabled on this server; send the image as an upload or as "
                                "base64 (or start the server with --allow-url-images)", "url_images_disabled")
        if urlsplit(url).scheme not in ("http", "https"):
            raise ApiError(400, "only http and https image URLs are supported", "bad_url")
        fetcher = UrlFetcher(self.url_max_bytes, self.url_timeout_s, AddressPolicy(self.url_allow_networks))
        return await fetcher.fetch(url)

    def check(self, data: bytes) -> None:
        """Refuse empty, unreadable or too many-pixel images from their header alone."""
        if not data:
            raise ImageError("the image is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"cannot read the image: {exc}") from exc
        if width * height > self.max_pixels:
            raise TooLarge(f"the image is {width}x{height} = {width * height} pixels, over this server's limit of "
                           f"{self.max_pixels}")

    async def decode(self, data: bytes) -> LoadedImage:
        """Check and decode ``data`` in a worker thread."""
        self.check(data)
        return await asyncio.to_thread(load_image, data, self.max_pixels)

    async def load(self, spec: ImageSpec) -> LoadedImage:
        """:meth:`bytes_of` then :meth:`decode`."""
        return await self.decode(await self.bytes_of(spec))


def decode_base64(text: str, max_bytes: int) -> bytes:
    """Bytes of a base64 string or ``data:...;base64,`` URL (400 when it is not valid base64)."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise ImageError("a data: URL image must be base64-encoded (data:image/png;base64,...)")
    if len(text) * 3 // 4 > max_bytes:
        raise TooLarge(f"the base64 image is over the limit of {max_bytes} bytes")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"image.base64 is not valid base64: {exc}") from exc

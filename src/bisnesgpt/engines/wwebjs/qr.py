"""QR codes as PNG data URLs (what ``phone_status.metadata.qrCode`` and ``GET …/qr`` carry)."""

from __future__ import annotations

import base64
import io

import segno

PNG_PREFIX = "data:image/png;base64,"
QR_SCALE = 6
QR_BORDER = 4


def qr_png(code: str, *, scale: int = QR_SCALE, border: int = QR_BORDER) -> bytes:
    """The QR code for ``code`` as PNG bytes (error correction L, like WhatsApp Web's)."""
    buffer = io.BytesIO()
    segno.make_qr(code, error="l").save(buffer, kind="png", scale=scale, border=border)
    return buffer.getvalue()


def qr_data_url(code: str) -> str:
    """The QR code for ``code`` as a ``data:image/png;base64,…`` URL."""
    return PNG_PREFIX + base64.b64encode(qr_png(code)).decode("ascii")


def png_from_data_url(data_url: str) -> bytes:
    """The PNG bytes of a ``data:image/png;base64,…`` URL (ValueError otherwise)."""
    if not data_url.startswith(PNG_PREFIX):
        raise ValueError("not a PNG data URL")
    return base64.b64decode(data_url[len(PNG_PREFIX):], validate=True)

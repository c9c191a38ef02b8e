"""Signed hold references, as printed in the buyer's QR code.

A reference is the hold id followed by an HMAC-SHA256 signature made with the
service's secret key and a salt of its own. A buyer cannot forge one for
another hold, and a session token signed with the same key is not a valid
reference. The staff
search verifies a reference typed in or typed by a barcode scanner and opens
the hold it names.
"""

from __future__ import annotations

import hashlib
import re

import segno
from itsdangerous import BadSignature, Signer

SALT = "hold-reference"
# Hold ids are "<sale>-<sequence>", as issued by the grab script.
_HOLD_ID = re.compile(r"[0-9]{1,18}-[0-9]{1,18}")
# Leaves room for the id, the separator and a 43-character signature.
MAX_REFERENCE_LENGTH = 100


class HoldRefs:
    """Signs hold ids into references and verifies them."""

    def __init__(self, secret_key: str) -> None:
        self._signer = Signer(secret_key, salt=SALT, digest_method=hashlib.sha256)

    def sign(self, hold_id: str) -> str:
        """Return the reference for `hold_id`; raise `ValueError` on a bad id."""
        if not _HOLD_ID.fullmatch(hold_id):
            raise ValueError(f"hold_id must look like '12-345', got {hold_id!r}")
        return self._signer.sign(hold_id).decode("ascii")

    def verify(self, reference: str) -> str | None:
        """Return the hold id a reference carries, or None if it is not genuine.

        Surrounding white space is ignored, because scanners often add a line
        end. Anything over `MAX_REFERENCE_LENGTH` characters is rejected
        unread.
        """
        reference = reference.strip()
        if not reference or len(reference) > MAX_REFERENCE_LENGTH:
            return None
        try:
            hold_id = self._signer.unsign(reference).decode("ascii")
        except (BadSignature, UnicodeError):
            return None
        return hold_id if _HOLD_ID.fullmatch(hold_id) else None


def qr_svg(text: str) -> str:
    """Return `text` as a QR code in SVG markup, ready to put inside HTML."""
    code = segno.make(text, error="m", micro=False)
    return code.svg_inline(scale=4, title="Hold reference QR code")

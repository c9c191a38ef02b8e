"""Signed hold references and their QR code."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from app.hold_refs import HoldRefs, qr_svg


def test_reference_round_trip() -> None:
    refs = HoldRefs("secret")

    reference = refs.sign("12-345")

    assert reference.startswith("12-345.")
    assert refs.verify(reference) == "12-345"
    assert refs.verify(f"  {reference}\r\n") == "12-345"


def test_reference_tampered_id() -> None:
    refs = HoldRefs("secret")
    signature = refs.sign("12-345").split(".", 1)[1]

    assert refs.verify(f"12-346.{signature}") is None


def test_reference_other_secret() -> None:
    reference = HoldRefs("secret").sign("12-345")

    assert HoldRefs("another secret").verify(reference) is None


def test_reference_rejects_session_token() -> None:
    # Same secret, other salt: a buyer's session token is no hold reference.
    token = URLSafeTimedSerializer("secret", salt="buyer-session").dumps([12, "R1"])

    assert HoldRefs("secret").verify(token) is None


@pytest.mark.parametrize("text", ["", "12-345", "x" * 101, "12-345.", "é.é"])
def test_reference_rejects_garbage(text: str) -> None:
    assert HoldRefs("secret").verify(text) is None


def test_sign_rejects_bad_hold_id() -> None:
    with pytest.raises(ValueError, match="hold_id must look like"):
        HoldRefs("secret").sign("12-345.x")


def test_qr_svg_is_inline_markup() -> None:
    svg = qr_svg(HoldRefs("secret").sign("12-345"))

    assert svg.startswith("<svg")
    assert "<?xml" not in svg
    assert "<title>Hold reference QR code</title>" in svg

"""Masking of winners on the public results page."""

from __future__ import annotations

import pytest

from app.results import mask_name, mask_registration_no


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("", "*"),
        ("王", "*"),
        ("王芳", "王*"),
        ("张小明", "张*明"),
        ("Zhang Wei", "Z***i"),
        ("  Li  ", "L*"),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("R2026-00042", "***0042"),
        ("A12345", "***345"),
        ("A1", "**"),
        ("ABCD", "***D"),
    ],
)
def test_mask_registration_no(number: str, masked: str) -> None:
    assert mask_registration_no(number) == masked

"""Argument types for the `parking-sale` command line, with bounds.

Each type raises `argparse.ArgumentTypeError`, so a bad value ends the
command with argparse's usage and a one-line error (exit status 2) before
anything runs or connects.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from app.inputs import is_ascii_digits
from app.sales import MAX_PAYMENT_HOURS, MIN_PAYMENT_HOURS

# Sale ids are Postgres bigint.
MAX_SALE_ID = 2**63 - 1
# Caps launch offsets and durations at ten years, far beyond any real sale.
TEN_YEARS_SECONDS = 10 * 365 * 24 * 3600


def sale_id(text: str) -> int:
    """Parse a sale id: ASCII digits from 1 to 2^63 - 1."""
    # The length check keeps int() from reading a huge number.
    if is_ascii_digits(text) and len(text) <= 19 and 1 <= int(text) <= MAX_SALE_ID:
        return int(text)
    raise argparse.ArgumentTypeError(
        f"sale id must be a whole number from 1 to {MAX_SALE_ID}, got {text!r}"
    )


def bounded_number(low: float, high: float, unit: str) -> Callable[[str], float]:
    """Return a type that parses a finite number from `low` to `high`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a number of {unit} from {low:.10g} to {high:.10g}, "
                f"got {text!r}"
            )
        return value

    return parse


seconds_from_now = bounded_number(-TEN_YEARS_SECONDS, TEN_YEARS_SECONDS, "seconds")
duration_minutes = bounded_number(1, TEN_YEARS_SECONDS / 60, "minutes")
payment_hours = bounded_number(MIN_PAYMENT_HOURS, MAX_PAYMENT_HOURS, "hours")

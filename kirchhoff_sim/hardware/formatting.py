"""How the hardware reports write figures: signed changes, and SI prefixes from units."""

from __future__ import annotations

from ..units import format_si

__all__ = ["format_si", "format_signed"]


def format_signed(value: float) -> str:
    """``+0.0123``; a rounding-size negative prints as +0.0000, not -0.0000."""
    text = f"{value:+.4f}"
    return "+0.0000" if text == "-0.0000" else text

"""How the hardware reports write physical quantities: SI prefixes and signed figures."""

from __future__ import annotations

import numpy as np

__all__ = ["format_si", "format_signed"]

_SI_PREFIXES = {-18: "a", -15: "f", -12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k"}


def format_si(value: float, unit: str) -> str:
    """``value`` with an SI prefix and three significant digits: ``1.23 fJ``, ``45.6 µW``."""
    if value == 0 or not np.isfinite(value):
        return f"{value:.3g} {unit}"
    exponent = int(np.clip(3 * np.floor(np.log10(abs(value)) / 3), min(_SI_PREFIXES), max(_SI_PREFIXES)))
    return f"{value / 10.0 ** exponent:.3g} {_SI_PREFIXES[exponent]}{unit}"


def format_signed(value: float) -> str:
    """``+0.0123``; a rounding-size negative prints as +0.0000, not -0.0000."""
    text = f"{value:+.4f}"
    return "+0.0000" if text == "-0.0000" else text

"""Old home of :class:`~kirchhoff_sim.units.PhysicalScale` (moved to :mod:`kirchhoff_sim.units`).

Kept for one release so that ``from kirchhoff_sim.spice.scale import PhysicalScale`` keeps
working; import it from :mod:`kirchhoff_sim.units` (or :mod:`kirchhoff_sim.spice`).
"""

from ..units import PhysicalScale

__all__ = ["PhysicalScale"]

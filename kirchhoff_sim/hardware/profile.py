"""Old home of the technology profile, re-exported from :mod:`kirchhoff_sim.technology`.

The profile moved below training, spice and hardware, which all take the same profile.
This module is kept for one release.
"""

from ..technology import (DEFAULT_PROFILE_FILE, PROFILE_FORMAT, PROFILE_VERSION, SCALE_PARAMETERS,
                          TechnologyProfile, default_profile, load_profile)
from ..units import format_si

__all__ = ["TechnologyProfile", "default_profile", "load_profile", "format_si", "PROFILE_FORMAT",
           "PROFILE_VERSION", "DEFAULT_PROFILE_FILE", "SCALE_PARAMETERS"]

"""Technology profile: the physical scale and the limits of the chip a net is mapped onto.

A :class:`TechnologyProfile` holds the physical scale of DESIGN.md §5 as a
:class:`~kirchhoff_sim.units.PhysicalScale` (``profile.scale``: ``V0``, ``C0``, ``G0``
and the time, current, energy and power units they imply) and the limits the
feasibility checks hold a circuit to: supply rails, the realisable conductance window and
precision, the per-device current limit, the power budget, the temperature for kT/C
noise and the largest fan-in of one node.

The defaults live in one place, ``default_profile.json`` beside this module (shipped as
package data), where every value carries its unit and a ``source`` that says where it
comes from. They are *representative* of analog in-memory computing with RRAM/PCM
crossbars and switched-capacitor front ends, not the figures of one process.

In the file the scale is three parameters, ``voltage_unit_v``, ``capacitance_unit_f``
and ``conductance_unit_s``, beside the limits. A user profile overrides any subset::

    {"parameters": {"capacitance_unit_f": 2e-13,
                    "rail_high_v": {"value": 1.2, "source": "our 2.4 V process"}}}

— a value is a number, or an object with ``value`` (and optionally ``unit``, which must
match, and ``source``). Fields may also be given at the top level
(``{"capacitance_unit_f": 2e-13}``). Unknown keys, wrong types, non-finite or out-of-range
values and inconsistent limits are refused with an :class:`~kirchhoff_sim.errors.InputError`
that names the file and the field.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from . import devices
from .cells.pdk import CORNERS
from .checks import as_int, as_positive, as_real
from .errors import InputError, ModelFileError
from .fileio import atomic_write_text, check_input_file
from .units import MAX_PRECISION_BITS as MAX_BITS
from .units import SCALE_PARAMETERS, PhysicalScale, check_scale_unit, format_si

__all__ = ["TechnologyProfile", "default_profile", "load_profile", "profile_of_model", "as_profile", "format_si", "PROFILE_FORMAT",
           "PROFILE_VERSION", "DEFAULT_PROFILE_FILE", "SCALE_PARAMETERS"]

PROFILE_FORMAT = "kirchhoff_sim.technology_profile"
PROFILE_VERSION = 1
DEFAULT_PROFILE_FILE = "default_profile.json"
#: profiles shipped with the package, by the name ``--profile`` and ``profile=`` take
BUILTIN_PROFILES = {"default": DEFAULT_PROFILE_FILE, "sky130": "sky130_profile.json"}
_HEADER_KEYS = ("format", "version", "name", "notes", "parameters")
_USER_SOURCE = "set by {where}"
_CODE_SOURCE = "set in code"

#: parameter of the profile file → (unit, kind): "positive" (finite > 0), "negative"
#: (finite < 0), "count" (int >= 1), "bits" (int in 1..MAX_BITS)
_FIELD_SPECS = {
    "capacitance_unit_f": ("F", "positive"),
    "conductance_unit_s": ("S", "positive"),
    "conductance_min_s": ("S", "positive"),
    "conductance_max_s": ("S", "positive"),
    "voltage_unit_v": ("V", "positive"),
    "rail_low_v": ("V", "negative"),
    "rail_high_v": ("V", "positive"),
    "supply_voltage_v": ("V", "positive"),
    "current_limit_a": ("A", "positive"),
    "power_budget_w": ("W", "positive"),
    "precision_bits": ("bits", "bits"),
    "temperature_k": ("K", "positive"),
    "max_node_degree": ("devices", "count"),
    "device_families": ("families", "families"),
    "pdk": ("", "pdk"),
    "corner": ("", "corner"),
}
#: fields added after version 1 profiles were first written, with the value a profile
#: without them means (a model trained before PDKs existed ran behavioural devices)
_LATER_FIELDS = {"pdk": "none", "corner": "tt"}
_LATER_SOURCE = "not in the file (written before the field existed): the default"
#: process design kits a profile may name: "none" (behavioural devices only) or sky130
#: (the transistor-level cell library, :mod:`kirchhoff_sim.cells`)
PDKS = ("none", "sky130")
#: named sets of device families a profile may give instead of a list
FAMILY_SETS = {
    "all": devices.FAMILIES,
    # passive two-terminals: i(0, 0) = 0 and a non-negative slope, no supply needed
    "passive": tuple(name for name in devices.FAMILIES if devices.family_class(name).passive),
}
#: the three file parameters that make up :attr:`TechnologyProfile.scale`, and its unit of each
_LIMITS = tuple(name for name in _FIELD_SPECS if name not in SCALE_PARAMETERS)
#: attributes of earlier releases, and where their values are now (read-only aliases, one release)
_MOVED = {"voltage_unit_v": "V0", "capacitance_unit_f": "C0", "conductance_unit_s": "G0",
          "time_unit_s": "time_unit", "current_unit_a": "current_unit", "energy_unit_j": "energy_unit"}


@dataclass(frozen=True)
class TechnologyProfile:
    """Physical scale and limits of the chip a net is mapped onto.

    Build one with :func:`default_profile`, :func:`load_profile` (defaults overridden by a
    file), :meth:`from_dict` or :meth:`replace`; every route validates.

    Attributes
    ----------
    scale : PhysicalScale
        ``V0`` (volts per normalised volt), ``C0`` (farads per unit of normalised
        capacitance) and ``G0`` (siemens per unit of normalised conductance); its
        ``time_unit``, ``current_unit``, ``energy_unit``, ``power_unit`` follow. The file
        parameters ``voltage_unit_v``, ``capacitance_unit_f``, ``conductance_unit_s``.
    conductance_min_s, conductance_max_s : float
        Realisable window of a programmed conductance ``|g|·G0`` (siemens).
    rail_low_v, rail_high_v : float
        Supply rails (volts) around the 0 V circuit ground; ``rail_low_v < 0 < rail_high_v``.
    supply_voltage_v : float
        Supply span of an active cell (volts), for its supply energy.
    current_limit_a : float
        Largest current one device may carry (amperes).
    power_budget_w : float
        Power budget (watts).
    precision_bits : int
        Parameter precision; the precision floor is ``conductance_max_s / 2**precision_bits``.
    temperature_k : float
        Temperature (kelvin) for kT/C noise.
    max_node_degree : int
        Most devices that may meet at one node (a crossbar line).
    device_families : tuple of str
        The device families the technology can build (file value: a list of family names,
        or ``"all"`` or ``"passive"`` — Conductance and Diode, the two-terminals that need
        no supply).
    pdk : str
        The process design kit of the transistor-level cells: ``"none"`` or ``"sky130"``.
    corner : str
        Its process corner: tt, ss, ff, sf or fs.
    name : str
        What the profile describes.
    notes : str
        Free text: where the values come from as a whole.
    sources : dict of str to str
        Per file parameter, where its value comes from.
    """

    scale: PhysicalScale
    conductance_min_s: float
    conductance_max_s: float
    rail_low_v: float
    rail_high_v: float
    supply_voltage_v: float
    current_limit_a: float
    power_budget_w: float
    precision_bits: int
    temperature_k: float
    max_node_degree: int
    device_families: tuple = devices.FAMILIES
    pdk: str = "none"
    corner: str = "tt"
    name: str = "custom"
    notes: str = ""
    sources: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if not isinstance(self.scale, PhysicalScale):
            raise InputError(f"TechnologyProfile.scale must be a PhysicalScale, got {type(self.scale).__name__}")
        for name in _LIMITS:
            object.__setattr__(self, name, _checked(getattr(self, name), name, "TechnologyProfile"))
        if not self.conductance_min_s < self.conductance_max_s:
            raise InputError(f"TechnologyProfile: conductance_min_s ({self.conductance_min_s:g} S) must be "
                             f"below conductance_max_s ({self.conductance_max_s:g} S)")
        for text in ("name", "notes"):
            if not isinstance(getattr(self, text), str):
                raise InputError(f"TechnologyProfile.{text} must be a string, got {getattr(self, text)!r}")
        sources = dict(self.sources)
        unknown = set(sources) - set(_FIELD_SPECS)
        if unknown:
            raise InputError(f"TechnologyProfile.sources names unknown fields {sorted(unknown)}")
        object.__setattr__(self, "sources", {k: str(sources.get(k, "")) for k in _FIELD_SPECS})

    def __getattr__(self, name):
        # only reached when normal lookup fails: the attributes of earlier releases
        if name in _MOVED:
            warnings.warn(f"TechnologyProfile.{name} is deprecated; use profile.scale.{_MOVED[name]}",
                          DeprecationWarning, stacklevel=2)
            return getattr(self.scale, _MOVED[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ derived
    def check_families(self, net) -> None:
        """Raise unless every device of ``net`` is of a family this technology can build.

        Raises
        ------
        InputError
            Naming the families that are not realisable, their edges (layer, group and
            count) and the families that are.
        """
        bad = {}
        for k, layer in enumerate(net.layers):
            for g, group in enumerate(layer.groups):
                family = type(group.device).__name__
                if family not in self.device_families:
                    bad.setdefault(family, []).append(f"layer {k} group {g} ({group.num_edges} edges)")
        if bad:
            listed = "; ".join(f"{family}: {', '.join(where)}" for family, where in bad.items())
            raise InputError(f"profile {self.name!r} cannot build the device families {sorted(bad)} "
                             f"({listed}); it realises {list(self.device_families)}")

    @property
    def precision_floor_s(self) -> float:
        """Smallest conductance step the programming resolves, ``g_max / 2**bits`` (siemens)."""
        return self.conductance_max_s / 2.0 ** self.precision_bits

    def parameters(self) -> dict:
        """``{file parameter: value}``, the scale's three included, in the file's order."""
        scale = {name: getattr(self.scale, unit) for name, unit in SCALE_PARAMETERS.items()}
        return {name: scale[name] if name in scale else getattr(self, name) for name in _FIELD_SPECS}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_parameters(cls, values: dict, *, name: str = "custom", notes: str = "",
                        sources: dict | None = None) -> "TechnologyProfile":
        """A profile from every file parameter (``{"voltage_unit_v": …, "rail_low_v": …}``)."""
        missing = [k for k in _FIELD_SPECS if k not in values]
        unknown = [k for k in values if k not in _FIELD_SPECS]
        if missing or unknown:
            raise InputError(f"TechnologyProfile parameters: missing {missing}, unknown {unknown}")
        scale = PhysicalScale(**{unit: _checked(values[key], key, "TechnologyProfile")
                                 for key, unit in SCALE_PARAMETERS.items()})
        return cls(scale=scale, **{k: values[k] for k in _LIMITS}, name=name, notes=notes,
                   sources={} if sources is None else sources)

    @classmethod
    def from_dict(cls, data: dict, *, base: "TechnologyProfile | None" = None,
                  where: str = "profile") -> "TechnologyProfile":
        """A profile from its JSON form (:meth:`to_dict`), or overrides of ``base``.

        Parameters
        ----------
        data : dict
            ``{"parameters": {field: value or {"value", "unit", "source"}}, "name": ...}``;
            fields may also sit at the top level.
        base : TechnologyProfile, optional
            Fields ``data`` does not give are taken from it. Without a base every field
            must be given.
        where : str
            Names the origin (a file) in error messages.

        Raises
        ------
        InputError
            Unknown keys, a missing field (without ``base``), a wrong type or unit, a
            value out of range, or inconsistent limits.
        """
        if not isinstance(data, dict):
            raise InputError(f"{where}: a technology profile must be a JSON object, got {type(data).__name__}")
        unknown = [k for k in data if k not in _HEADER_KEYS and k not in _FIELD_SPECS]
        if unknown:
            raise InputError(f"{where}: unknown key(s) {unknown}; a profile has "
                             f"{list(_HEADER_KEYS)} and the parameters {list(_FIELD_SPECS)}")
        if "format" in data and data["format"] != PROFILE_FORMAT:
            raise InputError(f"{where}: 'format' is {data['format']!r}, expected {PROFILE_FORMAT!r}")
        if "version" in data and data["version"] != PROFILE_VERSION:
            raise InputError(f"{where}: profile version {data['version']!r} is not supported "
                             f"(this kirchhoff_sim reads version {PROFILE_VERSION})")
        parameters = data.get("parameters", {})
        if not isinstance(parameters, dict):
            raise InputError(f"{where}: 'parameters' must be an object of field: value")
        unknown = [k for k in parameters if k not in _FIELD_SPECS]
        if unknown:
            raise InputError(f"{where}: unknown parameter(s) {unknown}; known: {list(_FIELD_SPECS)}")
        flat = {k: v for k, v in data.items() if k in _FIELD_SPECS}
        twice = sorted(set(flat) & set(parameters))
        if twice:
            raise InputError(f"{where}: {twice} given both at the top level and under 'parameters'")
        given = {**parameters, **flat}
        if base is None:
            # profiles written before a field existed (model files of earlier releases)
            given.update({k: {"value": v, "source": _LATER_SOURCE} for k, v in _LATER_FIELDS.items() if k not in given})
        missing = [k for k in _FIELD_SPECS if k not in given]
        if base is None and missing:
            raise InputError(f"{where}: missing parameter(s) {missing}")
        values, sources = {}, {} if base is None else dict(base.sources)
        for name, entry in given.items():
            values[name], source = _entry(entry, name, where)
            sources[name] = source if source is not None else _USER_SOURCE.format(where=where)
        if missing:
            inherited = base.parameters()
            values.update({name: inherited[name] for name in missing})
        texts = {}
        for text in ("name", "notes"):
            value = data.get(text, getattr(base, text) if base is not None else ("custom" if text == "name" else ""))
            if not isinstance(value, str):
                raise InputError(f"{where}: '{text}' must be a string, got {value!r}")
            texts[text] = value
        try:
            return cls.from_parameters(values, **texts, sources=sources)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None

    def replace(self, **changes) -> "TechnologyProfile":
        """A validated copy with some parameters changed (their source becomes "set in code").

        Keywords are file parameters (``capacitance_unit_f=2e-13``), ``scale`` (a
        :class:`~kirchhoff_sim.units.PhysicalScale`, for all three units at once),
        ``name`` and ``notes``.
        """
        scale = changes.pop("scale", None)
        unknown = set(changes) - set(_FIELD_SPECS) - {"name", "notes"}
        if unknown:
            raise InputError(f"TechnologyProfile has no field(s) {sorted(unknown)}")
        values = self.parameters()
        changed = [k for k in changes if k in _FIELD_SPECS]
        if scale is not None:
            if not isinstance(scale, PhysicalScale):
                raise InputError(f"TechnologyProfile.replace: scale must be a PhysicalScale, got "
                                 f"{type(scale).__name__}")
            both = sorted(set(changed) & set(SCALE_PARAMETERS))
            if both:
                raise InputError(f"TechnologyProfile.replace: {both} given beside scale")
            values.update({name: getattr(scale, unit) for name, unit in SCALE_PARAMETERS.items()})
            changed += list(SCALE_PARAMETERS)
        values.update({k: v for k, v in changes.items() if k in _FIELD_SPECS})
        sources = {**self.sources, **{k: _CODE_SOURCE for k in changed}}
        return TechnologyProfile.from_parameters(values, name=changes.get("name", self.name),
                                                 notes=changes.get("notes", self.notes), sources=sources)

    def to_dict(self) -> dict:
        """JSON form (what :meth:`save` writes and :meth:`from_dict` reads). Fields added
        later (``pdk``, ``corner``) are left out at the value their absence means, so a
        behavioural profile reads and compares as it did before they existed (a model's
        recorded training config, which ``--resume`` compares, stays the same)."""
        return {
            "format": PROFILE_FORMAT, "version": PROFILE_VERSION, "name": self.name, "notes": self.notes,
            "parameters": {name: {"value": list(value) if isinstance(value, tuple) else value,
                                  "unit": _FIELD_SPECS[name][0], "source": self.sources[name]}
                           for name, value in self.parameters().items()
                           if not (name in _LATER_FIELDS and value == _LATER_FIELDS[name] and self.pdk == "none")},
        }

    def save(self, path) -> Path:
        """Write the profile as JSON, atomically (temporary file, then rename)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def describe(self) -> str:
        """A readable table of every value with its unit and source."""
        lines = [f"technology profile: {self.name}"]
        if self.notes:
            lines.append(f"  {self.notes}")
        for name, value in self.parameters().items():
            shown = (", ".join(value) if isinstance(value, tuple) else value if isinstance(value, str) else
                     f"{value:d}" if isinstance(value, int) else f"{value:.4g}")
            lines.append(f"  {name:<20} {shown:>10} {_FIELD_SPECS[name][0]:<7}  {self.sources[name]}")
        return "\n".join(lines)


def _checked(value, name, where):
    """``value`` as the type of the file parameter ``name``, or an InputError that says why not."""
    label = f"{where}: {name}"
    kind = _FIELD_SPECS[name][1]
    if kind == "count":
        return as_int(value, label, minimum=1)
    if kind == "bits":
        return as_int(value, label, minimum=1, maximum=MAX_BITS)
    if name in SCALE_PARAMETERS:       # a unit of the physical scale: a plausible range
        return check_scale_unit(value, SCALE_PARAMETERS[name], label)
    if kind == "positive":
        return as_positive(value, label)
    if kind == "families":
        return _families(value, label)
    if kind in ("pdk", "corner"):
        choices = PDKS if kind == "pdk" else CORNERS
        if not isinstance(value, str) or value not in choices:
            raise InputError(f"{label} must be one of {', '.join(choices)}, got {value!r}")
        return value
    number = as_real(value, label)
    if not number < 0:
        raise InputError(f"{label} must be < 0 (the rail below the 0 V ground), got {value!r}")
    return number


def _families(value, label) -> tuple:
    """A family list, or the name of a :data:`FAMILY_SETS` set, as a tuple of family names."""
    if isinstance(value, str):
        if value not in FAMILY_SETS:
            raise InputError(f"{label} must be a list of device families or one of {list(FAMILY_SETS)}, "
                             f"got {value!r}")
        return tuple(FAMILY_SETS[value])
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise InputError(f"{label} must be a non-empty list of device family names, got {value!r}")
    unknown = sorted(set(value) - set(devices.FAMILIES))
    if unknown:
        raise InputError(f"{label} names unknown device families {unknown}; known: {list(devices.FAMILIES)}")
    return tuple(dict.fromkeys(value))


def _entry(entry, name, where):
    """``(value, source or None)`` of one parameter entry: a number or a value object."""
    unit = _FIELD_SPECS[name][0]
    source = None
    if isinstance(entry, dict):
        extra = set(entry) - {"value", "unit", "source"}
        if extra:
            raise InputError(f"{where}: parameter {name!r} has unknown key(s) {sorted(extra)}; "
                             f"use 'value', 'unit' and 'source'")
        if "value" not in entry:
            raise InputError(f"{where}: parameter {name!r} has no 'value'")
        if "unit" in entry and entry["unit"] != unit:
            raise InputError(f"{where}: parameter {name!r} is in {unit!r}, not {entry['unit']!r}")
        source = entry.get("source")
        if source is not None and not isinstance(source, str):
            raise InputError(f"{where}: the 'source' of {name!r} must be a string")
        entry = entry["value"]
    return _checked(entry, name, where), source


def _read_json(text: str, where: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:       # arrays or objects nested thousands deep
        raise InputError(f"{where}: JSON nested too deeply to read; a profile is a flat object") from None


def default_profile() -> TechnologyProfile:
    """The shipped defaults (``default_profile.json``), every field with its source."""
    return builtin_profile("default")


def builtin_profile(name: str) -> TechnologyProfile:
    """A profile shipped with the package (:data:`BUILTIN_PROFILES`): ``"default"`` or
    ``"sky130"`` (the transistor-level cells)."""
    if name not in BUILTIN_PROFILES:
        raise InputError(f"no built-in profile {name!r}; choose one of {', '.join(BUILTIN_PROFILES)}")
    file = BUILTIN_PROFILES[name]
    text = resources.files(__package__).joinpath(file).read_text(encoding="utf-8")
    return TechnologyProfile.from_dict(_read_json(text, file), where=file)


def load_profile(path=None) -> TechnologyProfile:
    """The default profile with the values of the JSON file ``path`` (any subset) over it.

    Parameters
    ----------
    path : str or Path, optional
        A profile file; ``None`` gives :func:`default_profile`.

    Raises
    ------
    InputError
        The file does not exist or cannot be read, is not JSON, or holds unknown keys or
        bad values (the message names the file and the field).
    """
    base = default_profile()
    if path is None:
        return base
    path = check_input_file(path, "profile file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"profile file {str(path)!r} cannot be read ({exc})") from None
    return TechnologyProfile.from_dict(_read_json(text, str(path)), base=base, where=str(path))


def profile_of_model(meta: dict, path=None) -> TechnologyProfile:
    """The technology profile a model runs on: ``path`` (a profile file, as
    :func:`load_profile`, or a built-in name, as :func:`as_profile`) if given, else the one it was trained against with its fitted
    V0 (``meta["technology"]["profile"]``, written by ``train --profile``), else the
    default profile.

    Parameters
    ----------
    meta : dict
        A model file's metadata (:func:`kirchhoff_sim.modelfile.read_model_file`).
    path : str or Path, optional

    Raises
    ------
    ModelFileError
        The model's recorded profile is malformed (the field is named).
    InputError
        ``path`` cannot be read or holds bad values.
    """
    if path is not None:
        return as_profile(path, "--profile")       # a file, or a built-in name (default, sky130)
    recorded = (meta.get("technology") or {}) if isinstance(meta, dict) else {}
    if not isinstance(recorded, dict):
        raise ModelFileError(f"the model's technology metadata is malformed: {recorded!r:.80}")
    if "profile" not in recorded:
        return default_profile()
    try:
        return TechnologyProfile.from_dict(recorded["profile"], where="the model's technology profile")
    except InputError as exc:
        raise ModelFileError(str(exc)) from None


def as_profile(value, name: str = "profile") -> TechnologyProfile:
    """A profile given as a built-in name (``"default"``, ``"sky130"``), a profile file
    (str or path) or a
    :class:`TechnologyProfile` — what ``train --profile`` and the estimators' ``profile=``
    take.

    Raises
    ------
    InputError
        Any other kind of value (``name`` says which argument), or a file that
        :func:`load_profile` refuses.
    """
    if isinstance(value, TechnologyProfile):
        return value
    if isinstance(value, str) and value in BUILTIN_PROFILES:
        return builtin_profile(value)
    if isinstance(value, str) or hasattr(value, "__fspath__"):
        return load_profile(value)
    raise InputError(f"{name} must be {' or '.join(map(repr, BUILTIN_PROFILES))}, a profile file or a TechnologyProfile, "
                     f"got {type(value).__name__}")

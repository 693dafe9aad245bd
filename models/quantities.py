"""Canonical quantities: one name, one unit, one physical range per quantity.

Every layer of electrode-twin (models, scenario files, MQTT topics, OPC UA browse names, store columns, JSON
output) uses these names and units. Units are fixed here and converted at the boundary (scenario loader,
connectors), never inside a model. The physical range is the widest range a value can take on any real line;
it is used to reject impossible input (a porosity of 1.3, a negative flow) with a message that names the
quantity, the value and the limit. It is *not* a tolerance or a specification.

Unit strings are written in plain ASCII as they appear on the wire (``"mg/cm2"``, ``"g/cm3"``, ``"um"``) and
``"-"`` for dimensionless quantities; :func:`twin.units` turns them into pint units.

References
----------
Thomitzek, M. et al. Digitalization Platform for Mechanistic Modeling of Battery Cell Production.
Sustainability 2022, 14, 1530 (Table A1, Table A2).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Quantity", "QUANTITIES", "quantity", "STAGES"]

#: Process stages in line order; every quantity belongs to one (used for ordering output tables).
STAGES = ("formulation", "raw_material", "mixing", "coating", "drying", "calendering", "cell")


@dataclass(frozen=True)
class Quantity:
    """A canonical quantity.

    Attributes
    ----------
    name : canonical name (``w_am``, ``h_cal`` ...)
    unit : canonical unit, ASCII (``"-"`` for dimensionless)
    description : what it is, in a process engineer's words
    stage : process stage it belongs to (one of :data:`STAGES`)
    low, high : physical range [unit]; values outside are impossible, not merely out of spec
    symbol : the paper's symbol
    """

    name: str
    unit: str
    description: str
    stage: str
    low: float
    high: float
    symbol: str = ""

    def check(self, value: float, where: str = "") -> None:
        """Raise ``ValueError`` naming the quantity, the value and the violated limit.

        NaN and infinities are rejected too.
        """
        suffix = f" ({where})" if where else ""
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{self.name} = {value} is not a finite number{suffix}")
        if not (self.low <= value <= self.high):
            raise ValueError(
                f"{self.name} = {value:g} {self.unit} is outside its physical range "
                f"[{self.low:g}, {self.high:g}] {self.unit}{suffix}"
            )


_Q = Quantity
_ALL = (
    # formulation ---------------------------------------------------------------------------------------------
    _Q("w_am", "-", "mass fraction of active material in the solids", "formulation", 0.0, 1.0, "ω_AM"),
    _Q("w_ca", "-", "mass fraction of conductive additive in the solids", "formulation", 0.0, 1.0, "ω_CA"),
    _Q("w_pb", "-", "mass fraction of polymer binder in the solids", "formulation", 0.0, 1.0, "ω_PB"),
    _Q("x_solids", "-", "solid content of the slurry (mass fraction)", "formulation", 0.0, 1.0, "x_solids"),
    # raw materials -------------------------------------------------------------------------------------------
    _Q("rho_am", "g/cm3", "particle density of the active material", "raw_material", 0.1, 25.0, "ρ_AM"),
    _Q("rho_ca", "g/cm3", "particle density of the conductive additive", "raw_material", 0.1, 25.0, "ρ_CA"),
    _Q("rho_pb", "g/cm3", "density of the polymer binder", "raw_material", 0.1, 25.0, "ρ_PB"),
    _Q("rho_solvent", "g/cm3", "density of the solvent", "raw_material", 0.1, 5.0, "ρ_solvent"),
    _Q("particle_radius", "um", "mean active material particle radius", "raw_material", 0.01, 100.0, "R_p"),
    # mixing / dispersion -------------------------------------------------------------------------------------
    _Q("rho_solids", "g/cm3", "density of the dry mix (eq. 8)", "mixing", 0.1, 25.0, "ρ_solids"),
    _Q("rho_slurry", "g/cm3", "density of the slurry (eq. 9)", "mixing", 0.1, 25.0, "ρ_slurry"),
    # coating -------------------------------------------------------------------------------------------------
    _Q("flow_rate", "cm3/h", "slurry volume flow of the slot-die pump", "coating", 0.0, 1.0e6, "V̇"),
    _Q("web_speed", "m/min", "substrate velocity", "coating", 0.0, 500.0, "v"),
    _Q("coating_width", "mm", "coating width", "coating", 0.0, 5000.0, "w"),
    _Q("h_wet", "um", "wet film thickness (eq. 10)", "coating", 0.0, 5000.0, "h_wet"),
    _Q("m_wet", "mg/cm2", "wet mass loading (eq. 11)", "coating", 0.0, 1000.0, "m_wet"),
    # drying --------------------------------------------------------------------------------------------------
    _Q("eps_dry", "-", "porosity after drying (DEM meta-model)", "drying", 0.0, 1.0, "ε_dry"),
    _Q("m_dry", "mg/cm2", "dry mass loading (eq. 12)", "drying", 0.0, 1000.0, "m_dry"),
    _Q("h_dry", "um", "coating thickness after drying (eq. 13)", "drying", 0.0, 5000.0, "h_dry"),
    _Q("rho_dry", "g/cm3", "coating density after drying (eq. 14)", "drying", 0.0, 25.0, "ρ_dry"),
    # calendering ---------------------------------------------------------------------------------------------
    _Q("line_load", "N/mm", "calender line load", "calendering", 0.0, 1.0e4, "q_L"),
    _Q("eps_min", "-", "minimal porosity reachable by calendering", "calendering", 0.0, 1.0, "ε_min"),
    _Q("gamma_c", "N/mm", "compaction resistance", "calendering", 1.0e-3, 1.0e5, "γ_c"),
    _Q("gamma_c_intercept", "N/mm", "compaction resistance extrapolated to zero mass loading",
       "calendering", -1.0e5, 1.0e5, "γ_c,0"),
    _Q("gamma_c_per_loading", "N*cm2/(mm*mg)", "increase of compaction resistance per dry mass loading",
       "calendering", -1.0e4, 1.0e4, "dγ_c/dm_dry"),
    _Q("eps_cal", "-", "porosity after calendering (eq. 15)", "calendering", 0.0, 1.0, "ε_cal"),
    _Q("h_cal", "um", "coating thickness after calendering", "calendering", 0.0, 5000.0, "h_cal"),
    _Q("rho_cal", "g/cm3", "coating density after calendering", "calendering", 0.0, 25.0, "ρ_cal"),
    _Q("phi_am", "-", "volume fraction of active material in the coating (eq. 16)", "calendering", 0.0, 1.0, "X_AM"),
    _Q("phi_ca", "-", "volume fraction of conductive additive in the coating (eq. 16)", "calendering", 0.0, 1.0,
       "X_CA"),
    _Q("phi_pb", "-", "volume fraction of polymer binder in the coating (eq. 16)", "calendering", 0.0, 1.0, "X_PB"),
    # cell ----------------------------------------------------------------------------------------------------
    _Q("kappa_s_eff", "S/m", "effective electronic conductivity of the solid phase", "cell", 0.0, 1.0e8, "κ_s,eff"),
    _Q("a_s", "1/m", "electrochemically active surface area per electrode volume", "cell", 0.0, 1.0e9, "a_s"),
    _Q("tau_eff", "-", "effective tortuosity of the pore (electrolyte) phase", "cell", 1.0, 1.0e4, "τ_eff"),
    _Q("capacity", "mAh/cm2", "discharge capacity at 1 mA/cm2", "cell", 0.0, 100.0, "Q"),
    _Q("energy_density", "Wh/L", "volumetric energy density of the cathode coating", "cell", 0.0, 1.0e4, "E_V"),
)

#: All canonical quantities by name, in line order.
QUANTITIES: dict[str, Quantity] = {q.name: q for q in _ALL}


def quantity(name: str) -> Quantity:
    """The canonical :class:`Quantity` called ``name``; ``KeyError`` listing close names otherwise."""
    try:
        return QUANTITIES[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, QUANTITIES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown quantity {name!r}{hint} (known: {', '.join(QUANTITIES)})") from None

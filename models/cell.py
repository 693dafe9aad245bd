"""Cell model of the paper (section 2.3, 3.3): structure surrogate + P2D half cell, from the chain's outputs.

Inputs are the paper's cell-model inputs, the formulation and the two structural parameters the process chain
delivers at its end (eq. 17): ``w_am``, ``w_ca``, ``w_pb``, ``m_dry``, ``rho_cal``; the materials (particle
densities, particle radius) are constants of a cell model. From them the calendered structure follows
(:func:`models.structure.coating_structure`), the structure surrogate gives the effective parameters, and the
P2D half cell (:class:`models.p2d.HalfCellP2D`) gives capacity and volumetric energy density.

The paper leaves ``w_pb`` out of the cell model's inputs and sets it to ``1 - w_am - w_ca`` (text of eq. 17);
here it is an input, and :func:`close_fractions` applies the paper's convention where it is wanted.

Units: mass fractions [-], m_dry [mg/cm2], densities [g/cm3], particle radius [um], capacity [mAh/cm2],
energy density [Wh/L of coating].

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, sections 2.3, 3.3, eq. (16), (17), Table A2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from .p2d import HalfCellP2D, P2DResult
from .structure import STRUCTURE_MODELS, coating_structure, effective_parameters

__all__ = ["CELL_INPUTS", "CELL_OUTPUTS", "MATERIALS", "Materials", "StructureParameters", "CellModel",
           "close_fractions", "check_inputs_present"]

#: Inputs of the cell model (and of its surrogate), canonical names.
CELL_INPUTS = ("w_am", "w_ca", "w_pb", "m_dry", "rho_cal")
#: Outputs, canonical names.
CELL_OUTPUTS = ("capacity", "energy_density")
#: Material constants a cell model is built for, canonical names.
MATERIALS = ("rho_am", "rho_ca", "rho_pb", "particle_radius")


@dataclass(frozen=True)
class Materials:
    """Material constants of the electrode.

    Attributes
    ----------
    rho_am, rho_ca, rho_pb : particle densities [g/cm3]
    particle_radius : AM particle radius [um]
    """

    rho_am: float
    rho_ca: float
    rho_pb: float
    particle_radius: float

    def __post_init__(self):
        for k, v in asdict(self).items():
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"material constant {k} = {v!r} must be a positive number")

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class StructureParameters:
    """Parameters of the structure surrogate (see :func:`models.structure.effective_parameters`).

    Attributes
    ----------
    model : one of :data:`models.structure.STRUCTURE_MODELS`
    kappa_am, kappa_cbm : electronic conductivities of AM and carbon-binder matrix [S/m]
    exponent_am, exponent_cbm : cementation exponents [-]
    percolation_threshold, percolation_exponent : [-]
    """

    model: str
    kappa_am: float
    kappa_cbm: float
    exponent_am: float = 1.5
    exponent_cbm: float = 8.5583
    percolation_threshold: float = 0.02
    percolation_exponent: float = 2.0

    def __post_init__(self):
        if self.model not in STRUCTURE_MODELS:
            raise ValueError(f"unknown structure model {self.model!r}; known: {', '.join(STRUCTURE_MODELS)}")

    def to_dict(self) -> dict:
        return asdict(self)


def check_inputs_present(samples: Mapping[str, object]) -> None:
    """``KeyError`` naming the cell inputs missing from ``samples`` (with a hint for ``w_pb``)."""
    missing = [k for k in CELL_INPUTS if k not in samples]
    if missing:
        hint = (" (for the paper's convention w_pb = 1 - w_am - w_ca, pass models.cell.close_fractions(samples))"
                if "w_pb" in missing else "")
        raise KeyError(f"cell model inputs missing: {', '.join(missing)}{hint}")


def close_fractions(samples: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``samples`` with ``w_pb = 1 - w_am - w_ca`` (the paper's cell-model convention, eq. 17 text)."""
    out = dict(samples)
    out["w_pb"] = 1.0 - np.asarray(samples["w_am"], float) - np.asarray(samples["w_ca"], float)
    return out


class CellModel:
    """Structure surrogate + P2D: capacity and energy density of the cell inputs.

    Parameters
    ----------
    p2d : HalfCellP2D -- the built half cell (its particle radius must be the materials')
    materials : Materials
    structure : StructureParameters
    """

    inputs = CELL_INPUTS
    outputs = CELL_OUTPUTS

    def __init__(self, p2d: HalfCellP2D, materials: Materials, structure: StructureParameters):
        if abs(p2d.parameters.particle_radius - materials.particle_radius) > 1e-9 * materials.particle_radius:
            raise ValueError(f"the P2D is built for particle_radius = {p2d.parameters.particle_radius} um, the "
                             f"materials say {materials.particle_radius} um")
        self.p2d = p2d
        self.materials = materials
        self.structure_parameters = structure

    def structure(self, w_am, w_ca, w_pb, m_dry, rho_cal) -> dict[str, np.ndarray]:
        """Calendered structure and effective parameters of the inputs (arrays broadcast together).

        Returns
        -------
        dict with h_cal [um], eps_cal, phi_am, phi_ca, phi_pb [-], kappa_s_eff [S/m], a_s [1/m], tau_eff [-],
        transport_efficiency [-].
        """
        m, s = self.materials, self.structure_parameters
        st = coating_structure(*np.broadcast_arrays(*[np.asarray(v, float) for v in (w_am, w_ca, w_pb, m_dry,
                                                                                       rho_cal)]),
                               m.rho_am, m.rho_ca, m.rho_pb)
        eff = effective_parameters(st["eps_cal"], st["phi_am"], st["phi_ca"], st["phi_pb"], m.particle_radius,
                                   s.kappa_am, s.kappa_cbm, s.model, s.exponent_am, s.exponent_cbm,
                                   s.percolation_threshold, s.percolation_exponent)
        return {**st, **eff}

    def solve(self, w_am, w_ca, w_pb, m_dry, rho_cal, c_0=None, c_max=None) -> P2DResult:
        """Run the P2D on every sample; failed samples are NaN with a reason."""
        st = self.structure(w_am, w_ca, w_pb, m_dry, rho_cal)
        return self.p2d.solve(st["h_cal"], st["eps_cal"], st["phi_am"], st["kappa_s_eff"], st["a_s"],
                              st["tau_eff"], c_0=c_0, c_max=c_max)

    def __call__(self, samples: Mapping[str, object]) -> dict[str, np.ndarray]:
        """{capacity, energy_density} of a mapping of input samples (every name of :data:`CELL_INPUTS`)."""
        check_inputs_present(samples)
        r = self.solve(*(samples[k] for k in CELL_INPUTS))
        return {"capacity": r.capacity, "energy_density": r.energy_density}

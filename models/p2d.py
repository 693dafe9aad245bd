"""P2D (Doyle-Fuller-Newman) half cell of the cathode, with PyBaMM: capacity and energy density per structure.

The working electrode is the calendered cathode ("positive"), the counter electrode lithium metal, as in the
paper's half-cell model (section 3.3). The cell is discharged at a constant current density (1 mA/cm2 in the
paper, ~0.4 C) from the initial lithium concentration ``c_0`` of the active material down to the lower cut-off
voltage. The structure enters per sample: thickness, porosity, active material volume fraction and the
structure surrogate's effective parameters (``kappa_s_eff``, ``a_s``, ``tau_eff``, see :mod:`models.structure`).

Built once, solved many times: the PyBaMM model is discretised once and every sample is a re-solve with
*input parameters* (IDAKLU solver), never a rebuild. PyBaMM cannot take the electrode thickness as an input
(it fixes the mesh), so each sample of thickness L is solved on a model of reference thickness L0 >= L with
the coordinate stretched by s = L / L0. The DFN is invariant under x -> x / s when porosity and active
material fraction are multiplied by s, the electrolyte tortuosity by s^2 and the solid conductivity divided by
s (amounts of electrolyte and active material per area, and every flux, stay the same); on PyBaMM's uniform
finite-volume mesh the discrete equations are identical too. Tests compare it with a model built at L itself.

Per-sample failures (a structure that is impossible, a solver that does not converge, a discharge that does
not reach the cut-off) give NaN and a reason for that sample; the rest of the batch is kept.

Units at the interface are the project's canonical ones: h_cal [um], particle radius [um], a_s [1/m],
kappa_s_eff [S/m], capacity [mAh/cm2], energy density [Wh/L of coating], current density [mA/cm2].

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, section 3.3 and Table A2.
M. Doyle, T. F. Fuller, J. Newman, J. Electrochem. Soc. 140 (1993) 1526.
V. Sulzer, S. G. Marquis, R. Timms, M. Robinson, S. J. Chapman, J. Open Res. Softw. 9 (2021) 14 (PyBaMM).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["HalfCellParameters", "HalfCellP2D", "P2DResult", "FARADAY"]

#: Faraday constant [C/mol].
FARADAY = 96485.33212

#: PyBaMM names of the quantities solved per sample.
_IN_EPS = "Positive electrode porosity"
_IN_PHI = "Positive electrode active material volume fraction"
_IN_TAU_E = "Positive electrode tortuosity factor (electrolyte)"
_IN_TAU_S = "Positive electrode tortuosity factor (electrode)"
_IN_SIGMA = "Positive electrode conductivity [S.m-1]"
_IN_C0 = "Initial concentration in positive electrode [mol.m-3]"
_IN_CMAX = "Maximum concentration in positive electrode [mol.m-3]"
_IN_J0 = "Active surface scale"
_OUT_Q = "Discharge capacity [A.h]"
_OUT_E = "Discharge energy [W.h]"
_OUT_V = "Voltage [V]"

#: Electrode area of the simulated cell [m2] (1 cm2, so 1 mA is 1 mA/cm2).
_AREA = 1.0e-4


@dataclass(frozen=True)
class HalfCellParameters:
    """Everything the half cell needs besides the per-sample structure.

    Attributes
    ----------
    particle_radius : AM particle radius [um] (Table A2: 5.5)
    c_max : maximum lithium concentration in the AM [mol/m3] (Table A2: 43221; calibrated)
    c_0 : initial lithium concentration in the AM [mol/m3] (Table A2: 15467; calibrated)
    c_e0 : initial electrolyte concentration [mol/m3] (Table A2: 1000)
    diffusivity_solid : solid diffusion coefficient [m2/s] (Table A2: 9.5594e-15)
    rate_constant : Butler-Volmer rate constant k [m^2.5 mol^-0.5 s^-1], i0 = F k (c_e (c_max - c_s))^(1-a) c_s^a
        (Table A2: 1.1717e-9, printed there as "s^-1")
    charge_transfer_coefficient : a [-] (Table A2: 0.5)
    double_layer_capacity : [F/m2] (Table A2: 0.2; unused by the DFN without a double layer)
    separator_thickness : [um]
    separator_porosity : [-] (Table A2: 0.5)
    separator_tortuosity : [-] (Table A2: 1)
    current_density : discharge current density [mA/cm2] (paper: 1)
    lower_cutoff, upper_cutoff : voltage limits [V]
    temperature : [K]
    base_set : PyBaMM parameter set supplying what the paper does not give (OCP, electrolyte transport as
        functions of concentration, lithium metal kinetics)
    base_entries : names of the PyBaMM parameters deliberately taken from ``base_set``; each must exist there
    overrides : further PyBaMM parameters as ((name [unit], value), ...), applied last
    """

    particle_radius: float
    c_max: float
    c_0: float
    c_e0: float
    diffusivity_solid: float
    rate_constant: float
    charge_transfer_coefficient: float
    double_layer_capacity: float
    separator_thickness: float
    separator_porosity: float
    separator_tortuosity: float
    current_density: float = 1.0
    lower_cutoff: float = 3.0
    upper_cutoff: float = 4.5
    temperature: float = 298.15
    base_set: str = "Xu2019"
    base_entries: tuple[str, ...] = ()
    overrides: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        positive = ("particle_radius", "c_max", "c_0", "c_e0", "diffusivity_solid", "rate_constant",
                    "charge_transfer_coefficient", "separator_thickness", "separator_porosity",
                    "separator_tortuosity", "current_density", "temperature")
        for name in positive:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"half-cell parameter {name} = {v!r} must be a positive number")
        if not self.c_0 < self.c_max:
            raise ValueError(f"half-cell parameter c_0 = {self.c_0:g} mol/m3 must be below c_max = "
                             f"{self.c_max:g} mol/m3")
        if not self.separator_porosity < 1:
            raise ValueError(f"half-cell parameter separator_porosity = {self.separator_porosity} must be below 1")
        if not self.lower_cutoff < self.upper_cutoff:
            raise ValueError(f"lower_cutoff = {self.lower_cutoff} V must be below upper_cutoff = "
                             f"{self.upper_cutoff} V")


@dataclass
class P2DResult:
    """Results of a batch of P2D solves; failed samples are NaN with a reason ('' where the solve succeeded)."""

    capacity: np.ndarray
    energy_density: np.ndarray
    reasons: list[str]

    @property
    def ok(self) -> np.ndarray:
        return np.array([r == "" for r in self.reasons], bool)

    @property
    def n_failed(self) -> int:
        return int(sum(1 for r in self.reasons if r))

    def failure_summary(self) -> dict[str, int]:
        """{reason: count} over the failed samples."""
        out: dict[str, int] = {}
        for r in self.reasons:
            if r:
                out[r] = out.get(r, 0) + 1
        return out


def _exchange_current(rate_constant: float, alpha: float):
    """i0 = s F k c_e^(1-a) (c_max - c_s)^(1-a) c_s^a [A/m2], s the per-sample active-surface scale."""
    import pybamm

    m_ref = FARADAY * rate_constant

    def exchange_current_density(c_e, c_s_surf, c_s_max, T):
        scale = pybamm.InputParameter(_IN_J0)
        return scale * m_ref * c_e ** (1.0 - alpha) * (c_s_max - c_s_surf) ** (1.0 - alpha) * c_s_surf**alpha

    return exchange_current_density


class HalfCellP2D:
    """PyBaMM DFN half cell (working electrode "positive"), built once per reference thickness.

    Parameters
    ----------
    parameters : HalfCellParameters
    reference_thickness : float -- thickness of the first built model [um]; samples up to this thickness share
        it, thicker ones get a model at reference * 2^k
    var_pts : mapping, optional -- PyBaMM mesh points per domain (default PyBaMM's, 20 per domain)
    threads : int -- IDAKLU threads for a batch
    chunk : int -- samples per IDAKLU batch call
    rtol, atol : float -- IDAKLU tolerances (PyBaMM's defaults are 1e-4 / 1e-6; 1e-6 / 1e-8 keeps the
        solver's scatter far below what a surrogate is validated against)

    Examples
    --------
    >>> cell = HalfCellP2D(params)                                          # doctest: +SKIP
    >>> r = cell.solve(h_cal=48.5, eps_cal=0.315, phi_am=0.584, kappa_s_eff=5.2, a_s=3.18e5, tau_eff=5.94)
    >>> r.capacity, r.energy_density                                         # mAh/cm2, Wh/L
    """

    def __init__(self, parameters: HalfCellParameters, reference_thickness: float = 100.0,
                 var_pts: Mapping[str, int] | None = None, threads: int = 1, chunk: int = 64,
                 rtol: float = 1e-6, atol: float = 1e-8):
        if reference_thickness <= 0:
            raise ValueError(f"reference_thickness = {reference_thickness} um must be positive")
        self.parameters = parameters
        self.reference_thickness = float(reference_thickness)
        self.var_pts = dict(var_pts) if var_pts else None
        self.threads = max(1, int(threads))
        self.chunk = max(1, int(chunk))
        self.rtol, self.atol = float(rtol), float(atol)
        self._sims: dict[float, object] = {}
        self.builds = 0

    # ----------------------------------------------------------------------------------------------------------
    # building

    def parameter_values(self, thickness_um: float):
        """The PyBaMM ParameterValues of a model of this thickness (structure entries are input parameters)."""
        import pybamm

        p = self.parameters
        pv = pybamm.ParameterValues(p.base_set)
        missing = [k for k in p.base_entries if k not in pv.keys()]
        if missing:
            raise ValueError(f"PyBaMM parameter set {p.base_set!r} has no {', '.join(map(repr, missing))}")
        pv.update({
            "Electrode height [m]": 1.0e-2,
            "Electrode width [m]": _AREA / 1.0e-2,
            "Current function [A]": p.current_density * 10.0 * _AREA,  # mA/cm2 -> A/m2 -> A
            "Nominal cell capacity [A.h]": 1.0e-3,
            "Positive electrode thickness [m]": thickness_um * 1e-6,
            "Positive particle radius [m]": p.particle_radius * 1e-6,
            "Positive particle diffusivity [m2.s-1]": p.diffusivity_solid,
            "Positive electrode exchange-current density [A.m-2]":
                _exchange_current(p.rate_constant, p.charge_transfer_coefficient),
            "Positive electrode charge transfer coefficient": p.charge_transfer_coefficient,
            "Positive electrode double-layer capacity [F.m-2]": p.double_layer_capacity,
            "Initial concentration in electrolyte [mol.m-3]": p.c_e0,
            "Separator thickness [m]": p.separator_thickness * 1e-6,
            "Separator porosity": p.separator_porosity,
            "Separator tortuosity factor (electrolyte)": p.separator_tortuosity,
            "Lower voltage cut-off [V]": p.lower_cutoff,
            "Upper voltage cut-off [V]": p.upper_cutoff,
            "Open-circuit voltage at 0% SOC [V]": p.lower_cutoff,
            "Open-circuit voltage at 100% SOC [V]": p.upper_cutoff,
            "Ambient temperature [K]": p.temperature,
            "Initial temperature [K]": p.temperature,
            "Reference temperature [K]": p.temperature,
            _IN_EPS: "[input]",
            _IN_PHI: "[input]",
            _IN_TAU_E: "[input]",
            _IN_TAU_S: "[input]",
            _IN_SIGMA: "[input]",
            _IN_C0: "[input]",
            _IN_CMAX: "[input]",
        }, check_already_exists=False)
        if p.overrides:
            pv.update(dict(p.overrides), check_already_exists=False)
        return pv

    def _sim(self, thickness_um: float):
        sim = self._sims.get(thickness_um)
        if sim is None:
            import pybamm

            model = pybamm.lithium_ion.DFN({"working electrode": "positive",
                                            "transport efficiency": "tortuosity factor",
                                            "calculate discharge energy": "true"})
            solver = pybamm.IDAKLUSolver(rtol=self.rtol, atol=self.atol,
                                         output_variables=[_OUT_Q, _OUT_E, _OUT_V],
                                         options={"num_threads": self.threads})
            sim = pybamm.Simulation(model, parameter_values=self.parameter_values(thickness_um), solver=solver,
                                    var_pts=self.var_pts)
            sim.build()
            self._sims[thickness_um] = sim
            self.builds += 1
        return sim

    def _reference_for(self, h_cal: float) -> float:
        k = max(0, math.ceil(math.log2(h_cal / self.reference_thickness) - 1e-12))
        return self.reference_thickness * 2.0**k

    # ----------------------------------------------------------------------------------------------------------
    # solving

    def _inputs(self, L0, h, eps, phi, kappa, a_s, tau, c0, cmax) -> dict:
        s = h / L0
        return {
            _IN_EPS: s * eps,
            _IN_PHI: s * phi,
            _IN_TAU_E: s * s * tau,
            _IN_TAU_S: 1.0 - s * eps,  # electrode transport efficiency (1 - eps')/tau_s = 1
            _IN_SIGMA: kappa / s,
            _IN_C0: c0,
            _IN_CMAX: cmax,
            _IN_J0: a_s * self.parameters.particle_radius * 1e-6 / (3.0 * phi),
        }

    @staticmethod
    def _check(h, eps, phi, kappa, a_s, tau, c0, cmax) -> str:
        vals = {"h_cal": h, "eps_cal": eps, "phi_am": phi, "kappa_s_eff": kappa, "a_s": a_s, "tau_eff": tau,
                "c_0": c0, "c_max": cmax}
        for k, v in vals.items():
            if not math.isfinite(v):
                return f"{k} = {v} is not finite"
        for k in ("h_cal", "phi_am", "kappa_s_eff", "a_s", "tau_eff", "c_0", "c_max"):
            if vals[k] <= 0:
                return f"{k} = {vals[k]:.6g} must be positive"
        if not 0 < eps < 1:
            return f"eps_cal = {eps:.6g} is outside (0, 1)"
        if eps + phi > 1 + 1e-9:
            return f"eps_cal + phi_am = {eps + phi:.6g} exceeds 1"
        if c0 >= cmax:
            return f"c_0 = {c0:.6g} mol/m3 is not below c_max = {cmax:.6g} mol/m3"
        return ""

    def _t_max(self, h, phi, c0, cmax) -> float:
        """Upper time bound [s]: 1.5 x the time to fill every particle from c_0 to c_max at this current."""
        i = self.parameters.current_density * 10.0  # A/m2
        t_full = np.max((cmax - c0) * phi * h * 1e-6 * FARADAY / i)
        return float(max(3600.0, 1.5 * t_full))

    def _read(self, sol, h) -> tuple[float, float, str]:
        term = str(getattr(sol, "termination", ""))
        if "Minimum voltage" not in term:
            return math.nan, math.nan, f"discharge ended by {term or 'unknown'} before the cut-off voltage"
        q = float(sol[_OUT_Q].entries[-1])
        e = float(sol[_OUT_E].entries[-1])
        cap = q * 1.0e3 / (_AREA * 1.0e4)  # A.h over 1 cm2 -> mAh/cm2
        energy = e / (_AREA * h * 1e-6 * 1.0e3)  # W.h per litre of coating
        if not (math.isfinite(cap) and math.isfinite(energy)) or cap <= 0:
            return math.nan, math.nan, f"solver returned capacity {cap!r}"
        return cap, energy, ""

    def solve(self, h_cal, eps_cal, phi_am, kappa_s_eff, a_s, tau_eff, c_0=None, c_max=None) -> P2DResult:
        """Discharge every sample; arrays (or scalars) broadcast together.

        Parameters
        ----------
        h_cal : array_like -- cathode thickness [um]
        eps_cal : array_like -- porosity [-]
        phi_am : array_like -- active material volume fraction [-]
        kappa_s_eff : array_like -- effective electronic conductivity of the solid [S/m]
        a_s : array_like -- active surface area [1/m]
        tau_eff : array_like -- tortuosity factor of the pores [-]
        c_0, c_max : array_like, optional -- initial and maximum AM lithium concentration [mol/m3]
            (default: the parameters')

        Returns
        -------
        P2DResult with capacity [mAh/cm2], energy_density [Wh/L] and a reason per failed sample.
        """
        p = self.parameters
        arrays = np.broadcast_arrays(*[np.asarray(v, float) for v in (
            h_cal, eps_cal, phi_am, kappa_s_eff, a_s, tau_eff,
            p.c_0 if c_0 is None else c_0, p.c_max if c_max is None else c_max)])
        cols = [a.ravel() for a in arrays]
        n = cols[0].size
        cap = np.full(n, np.nan)
        energy = np.full(n, np.nan)
        reasons = [""] * n
        groups: dict[float, list[int]] = {}
        for i in range(n):
            row = [c[i] for c in cols]
            why = self._check(*row)
            if why:
                reasons[i] = f"invalid structure: {why}"
                continue
            groups.setdefault(self._reference_for(row[0]), []).append(i)
        for L0, idx in sorted(groups.items()):
            sim = self._sim(L0)
            for start in range(0, len(idx), self.chunk):
                part = idx[start:start + self.chunk]
                self._solve_part(sim, L0, part, cols, cap, energy, reasons)
        shape = arrays[0].shape
        return P2DResult(cap.reshape(shape), energy.reshape(shape), reasons)

    def _solve_part(self, sim, L0, part, cols, cap, energy, reasons) -> None:
        h, eps, phi, kappa, a_s, tau, c0, cmax = (c[part] for c in cols)
        t_max = self._t_max(h, phi, c0, cmax)
        inputs = [self._inputs(L0, *(float(x[j]) for x in (h, eps, phi, kappa, a_s, tau, c0, cmax)))
                  for j in range(len(part))]
        try:
            sols = sim.solve([0.0, t_max], inputs=inputs if len(inputs) > 1 else inputs[0])
            sols = sols if isinstance(sols, list) else [sols]
        except Exception:  # noqa: BLE001 - one bad sample fails the whole batch call: redo one by one
            sols = []
            for j, inp in enumerate(inputs):
                try:
                    sols.append(sim.solve([0.0, t_max], inputs=inp))
                except Exception as exc:  # noqa: BLE001 - recorded per sample, never lost
                    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    sols.append(f"solver failed: {type(exc).__name__}: {msg[:200]}")
        for j, sol in enumerate(sols):
            i = part[j]
            if isinstance(sol, str):
                reasons[i] = sol
                continue
            cap[i], energy[i], reasons[i] = self._read(sol, h[j])

    def discharge_curve(self, h_cal, eps_cal, phi_am, kappa_s_eff, a_s, tau_eff, c_0=None, c_max=None):
        """Voltage over discharged capacity of one structure.

        Returns
        -------
        (capacity [mAh/cm2], voltage [V]) as arrays.
        """
        p = self.parameters
        row = [float(h_cal), float(eps_cal), float(phi_am), float(kappa_s_eff), float(a_s), float(tau_eff),
               float(p.c_0 if c_0 is None else c_0), float(p.c_max if c_max is None else c_max)]
        why = self._check(*row)
        if why:
            raise ValueError(f"invalid structure: {why}")
        L0 = self._reference_for(row[0])
        sol = self._sim(L0).solve([0.0, self._t_max(*(np.array([row[i]]) for i in (0, 2, 6, 7)))],
                                  inputs=self._inputs(L0, *row))
        return (np.asarray(sol[_OUT_Q].entries) * 1.0e3 / (_AREA * 1.0e4), np.asarray(sol[_OUT_V].entries))

    def stand_in_entries(self) -> dict[str, object]:
        """PyBaMM parameters that come from the base set unchanged (what the paper does not give)."""
        return {k: self.parameter_values(self.reference_thickness)[k] for k in self.parameters.base_entries}

    @property
    def inputs(self) -> Sequence[str]:
        return ("h_cal", "eps_cal", "phi_am", "kappa_s_eff", "a_s", "tau_eff")

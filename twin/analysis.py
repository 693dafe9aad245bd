"""Tolerance identification and robust setpoints for a scenario and a specification file.

The application layer between the spec/scenario files and the pure analyses in :mod:`models.tolerance` and
:mod:`models.robust`: it builds the product model (process chain, plus the cell surrogate when a limit concerns
capacity or energy_density), checks that every name in the spec makes sense for the scenario, and assembles
the JSON-able results the commands print.
"""

from __future__ import annotations

from models.inverse import TargetUnreachable, solve_setpoints
from models.robust import robust_setpoints
from models.tolerance import SpecError, verify_share, widest_tolerances

from .product import ProductModel, analysis_chain
from .scenario import FRACTIONS, Scenario
from .sensitivity import load_cell, uncertain_inputs
from .spec import Spec

__all__ = ["product_model", "identify_tolerances", "optimize_setpoints", "AnalysisInputError"]

CELL_OUTPUTS = ("capacity", "energy_density")


class AnalysisInputError(ValueError):
    """The spec and the scenario do not fit together (a name the model does not compute, an unknown input)."""


def product_model(spec: Spec, scenario: Scenario, cell=None, extra: tuple[str, ...] = ()) -> ProductModel:
    """The model that computes every limited quantity of ``spec`` (chain, plus the cell if needed).

    Meta-models of the chain and the cell surrogate give NaN outside their design spaces: such samples count as
    out of spec (nothing can be certified there) instead of stopping the search.

    ``cell``: a surrogate to use; loaded (design-space policy "nan": samples outside count as out of spec) when
    a limit needs it and none is given.
    """
    chain = analysis_chain(scenario)
    names = [l.name for l in spec.limits] + list(extra)
    if any(n in CELL_OUTPUTS for n in names) and cell is None:
        try:
            cell = load_cell("required", design_policy="nan")
        except Exception as exc:
            needs = ", ".join(n for n in names if n in CELL_OUTPUTS)
            raise AnalysisInputError(f"the spec limits {needs}, which needs the cell model: {exc}") from None
    model = ProductModel(chain, cell, outputs=names)
    for name in names:
        if not model.computes(name) and name not in scenario.marginals:
            raise AnalysisInputError(f"{name} is neither computed by the process chain"
                                     f"{' or the cell model' if cell is not None else ''} nor an input of "
                                     f"scenario {scenario.name!r}")
    if cell is not None and hasattr(cell, "check_materials"):
        cell.check_materials(scenario.nominal())
    return model


def _closed(scenario: Scenario):
    return FRACTIONS if scenario.closed_fractions else None


def identify_tolerances(spec: Spec, scenario: Scenario, cell=None, n: int | None = None, seed: int = 0,
                        target_share: float | None = None, kind: str | None = None) -> dict:
    """Widest tolerances of the scenario's inputs for which the spec's target share of segments is in spec.

    Also reports the share in spec with the scenario's own (current) distributions, for reference.
    """
    t = spec.tolerances
    model = product_model(spec, scenario, cell)
    inputs = list(t.inputs) if t.inputs is not None else uncertain_inputs(scenario)
    for name in inputs + list(t.fixed):
        if name not in scenario.marginals:
            raise AnalysisInputError(f"[tolerances] {name} is not an input of scenario {scenario.name!r} "
                                     f"(inputs: {', '.join(scenario.marginals)})")
    if not inputs:
        raise AnalysisInputError(f"scenario {scenario.name!r} has no uncertain input to size; list them in "
                                 f"[tolerances] inputs")
    n = n or t.samples
    share = target_share if target_share is not None else spec.target_share
    kind = kind or t.kind
    reference = {}
    for k in inputs:
        m = scenario.marginals[k]
        if not m.is_constant and m.nominal:
            rel = m.std / abs(m.nominal)
            reference[k] = rel if kind == "rel_std" else rel * 3 ** 0.5  # a uniform band with the same std
    try:
        res = widest_tolerances(model, scenario.marginals, inputs, spec.limits, share, kind, t.max,
                                t.fixed, n, seed, t.confidence, correlation=scenario.correlation,
                                closed=_closed(scenario), allocation=t.allocation, reference=reference)
    except SpecError as exc:
        raise AnalysisInputError(str(exc)) from None
    res["scenario"] = scenario.name
    res["spec"] = spec.name
    res["current"] = verify_share(model, scenario.marginals, spec.limits, 5 * n, seed + 2, scenario.correlation,
                                  _closed(scenario), t.confidence)
    res["current"]["tolerances"] = reference
    return res


def _default_targets(spec: Spec, chain) -> dict[str, float]:
    """Centres of the two-sided limits of quantities the chain computes (the nominal inverse's targets)."""
    return {l.name: 0.5 * (l.low + l.high) for l in spec.limits
            if l.low is not None and l.high is not None and chain.producer(l.name) is not None}


def optimize_setpoints(spec: Spec, scenario: Scenario, cell=None, n: int | None = None, seed: int = 0,
                       objective: str | None = None) -> dict:
    """Robust setpoints for the spec under the scenario's uncertainty, compared with the nominal inverse solution.

    The nominal inverse solution hits the spec's ``[optimize] targets`` (default: the centres of the two-sided
    limits of chain outputs) with the scenario's nominal inputs (:func:`models.inverse.solve_setpoints`); the
    robust search starts there.
    """
    o = spec.optimize
    objective = objective or o.objective
    extra = tuple(o.targets) + ((o.minimize,) if o.minimize else ())
    model = product_model(spec, scenario, cell, extra)
    chain = model.chain
    free = list(o.free)
    for f in free:
        if f not in scenario.marginals:
            raise AnalysisInputError(f"[optimize] free setpoint {f} is not an input of scenario {scenario.name!r}")
        if chain.producer(f) is not None:
            raise AnalysisInputError(f"[optimize] free setpoint {f} is computed by the chain, not a setpoint")
    bounds = {f: o.bounds.get(f, scenario.bounds_for(f)) for f in free}
    nominal = scenario.nominal()
    for f in free:
        lo, hi = bounds[f]
        if not lo <= nominal[f] <= hi:
            raise AnalysisInputError(f"[optimize] bounds {f} = [{lo:g}, {hi:g}] do not contain the scenario's "
                                     f"nominal {f} = {nominal[f]:g}")
    targets = dict(o.targets) or _default_targets(spec, chain)
    if objective == "variance" and not o.minimize:
        raise AnalysisInputError("[optimize] objective = \"variance\" needs minimize = NAME in the spec (the output "
                                 "whose standard deviation is minimized)")
    if objective == "variance" and not o.targets:
        raise AnalysisInputError("[optimize] objective = \"variance\" needs targets = { NAME = MEAN, ... }")
    inverse: dict
    chain_targets = {k: v for k, v in targets.items() if chain.producer(k) is not None}
    start = {f: nominal[f] for f in free}
    if chain_targets:
        try:
            inv = solve_setpoints(chain, nominal, chain_targets, free, bounds)
            inverse = {"targets": chain_targets, "setpoints": inv.setpoints, "achieved": inv.achieved}
            start = dict(inv.setpoints)
        except TargetUnreachable as exc:
            inverse = {"targets": chain_targets, "error": str(exc)}
    else:
        inverse = {"targets": {}, "error": "no chain target to solve for (give [optimize] targets)"}

    def marginals_at(setpoints):
        return scenario.with_nominal(setpoints).marginals

    compare = {"scenario_nominal": {f: nominal[f] for f in free}}
    if "setpoints" in inverse:
        compare["nominal_inverse"] = inverse["setpoints"]
    try:
        res = robust_setpoints(model, marginals_at, free, bounds, spec.limits, start, objective,
                               targets if objective == "variance" else None, o.minimize, n or o.samples, seed,
                               scenario.correlation, _closed(scenario), compare=compare)
    except (ValueError, KeyError) as exc:
        raise AnalysisInputError(str(exc.args[0] if exc.args else exc)) from None
    res["scenario"] = scenario.name
    res["spec"] = spec.name
    res["target_share"] = spec.target_share
    res["inverse"] = inverse
    return res

"""Cell model throughput: the P2D half cell (first solve, re-solves, batches) against its polynomial-chaos
surrogate, measured in the same run.

    .venv/bin/python bench/bench_cell.py [--repeat 3] [--resolves 20] [--batch 64]

Rows (medians of --repeat runs where repeated):
  * P2D build            -- PyBaMM DFN half cell: model, parameters, mesh, discretisation (once per process)
  * P2D first solve      -- the first solve of the built model (IDAKLU set-up, casadi functions)
  * P2D re-solve         -- one sample at a time on the built model, new input parameters each time (1 thread)
  * P2D batch            -- a list of --batch samples in one IDAKLU call (threads from config/cell/half_cell.toml)
  * surrogate, n = ...   -- CellSurrogate.__call__ (design-space and material checks included) on n samples
  * design matrix        -- the same expansion evaluated as the plain (n x terms) Legendre design matrix
  * OpenTURNS            -- the same expansion evaluated by OpenTURNS (what a FunctionalChaosResult does)
Ratios: surrogate evaluations/s at 10^4 samples (one twin segment) over P2D solves/s (re-solve and batch).
Targets (issue 4): surrogate >= 1e5 evaluations/s and >= 1000x the P2D.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _samples(sur, n: int, rng) -> dict:
    """n input samples around the paper's use case (1 % relative spread, as the twin's segments)."""
    nominal = {"w_am": 0.94, "w_ca": 0.03, "w_pb": 0.03, "m_dry": 14.3, "rho_cal": 2.95}
    return {k: rng.normal(v, 0.01 * v, n) for k, v in nominal.items() if k in sur.inputs}


def _median_time(f, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _openturns_function(sur, output: int):
    """The surrogate's expansion of one output as an OpenTURNS function of the physical inputs."""
    import openturns as ot

    d = len(sur.inputs)
    enum = ot.LinearEnumerateFunction(d)
    basis = ot.OrthogonalProductPolynomialFactory([ot.LegendreFactory()] * d)
    keep = [k for k, c in enumerate(sur.coef[output]) if c != 0.0]  # the other output's terms are zero here
    funcs = [basis.build(enum.inverse([int(a) for a in sur.indices[k]])) for k in keep]
    combo = ot.LinearCombinationFunction(funcs, [float(sur.coef[output][k]) for k in keep])
    lo, hi = np.asarray(sur.design_space.low), np.asarray(sur.design_space.high)
    # z = 2 (x - lo) / (hi - lo) - 1
    scale = ot.LinearFunction([0.0] * d, list(-1.0 - 2.0 * lo / (hi - lo)), ot.Matrix(np.diag(2.0 / (hi - lo))))
    return ot.ComposedFunction(combo, scale)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--resolves", type=int, default=20, help="single re-solves timed per repeat")
    ap.add_argument("--batch", type=int, default=64, help="samples in one batch solve")
    args = ap.parse_args(argv)

    from models.cell import CELL_INPUTS
    from models.metamodel import legendre_design_matrix
    from models.p2d import HalfCellP2D
    from twin.cell import build_cell_model, load_cell_config, load_cell_surrogate

    rng = np.random.default_rng(0)
    rows: list[tuple[str, float, str]] = []  # (what, per second, note)

    # --- P2D ------------------------------------------------------------------------------------------------
    t = time.perf_counter()
    import pybamm  # noqa: F401

    t_import = time.perf_counter() - t
    cfg = load_cell_config()
    cell = build_cell_model(cfg, threads=1)
    p = cell.p2d
    one = HalfCellP2D(p.parameters, p.reference_thickness, threads=1, rtol=p.rtol, atol=p.atol)
    t = time.perf_counter()
    one._sim(p.reference_thickness)
    t_build = time.perf_counter() - t
    st = cell.structure(0.94, 0.03, 0.03, 14.3, 2.95)
    args_p2d = [st[k] for k in ("h_cal", "eps_cal", "phi_am", "kappa_s_eff", "a_s", "tau_eff")]
    t = time.perf_counter()
    first = one.solve(*args_p2d)
    t_first = time.perf_counter() - t
    assert first.n_failed == 0, first.reasons

    X = _samples(cell, args.resolves, rng)
    sts = cell.structure(*(X[k] for k in CELL_INPUTS))

    def resolves():
        for i in range(args.resolves):
            r = one.solve(*(sts[k][i] for k in ("h_cal", "eps_cal", "phi_am", "kappa_s_eff", "a_s", "tau_eff")))
            assert r.n_failed == 0, r.reasons

    t_resolve = _median_time(resolves, args.repeat) / args.resolves
    threads = int(cfg.half_cell.get("numerics", {}).get("threads", 1))
    batch = HalfCellP2D(p.parameters, p.reference_thickness, threads=threads, chunk=args.batch, rtol=p.rtol,
                        atol=p.atol)
    XB = _samples(cell, args.batch, rng)
    stb = cell.structure(*(XB[k] for k in CELL_INPUTS))
    argb = [stb[k] for k in ("h_cal", "eps_cal", "phi_am", "kappa_s_eff", "a_s", "tau_eff")]
    batch.solve(*[a[:2] for a in argb])  # build + first solve outside the timing
    t_batch = _median_time(lambda: batch.solve(*argb), args.repeat) / args.batch
    rows += [
        ("P2D import pybamm", 1 / t_import, f"{t_import:.2f} s once per process"),
        ("P2D build", 1 / t_build, f"{t_build:.2f} s once per model"),
        ("P2D first solve", 1 / t_first, f"{1e3 * t_first:.0f} ms"),
        ("P2D re-solve (1 thread)", 1 / t_resolve, f"{1e3 * t_resolve:.1f} ms per solve"),
        (f"P2D batch of {args.batch} ({threads} thr.)", 1 / t_batch, f"{1e3 * t_batch:.1f} ms per solve"),
    ]

    # --- surrogate ------------------------------------------------------------------------------------------
    sur = load_cell_surrogate()
    rates = {}
    for n in (1, 100, 10_000, 100_000, 1_000_000):
        S = _samples(sur, n, rng)
        for _ in range(3):  # warm-up: the twin calls it for every segment, so steady state is what counts
            sur(S)
        rep = max(args.repeat, 7) if n <= 10_000 else args.repeat
        t = _median_time(lambda: sur(S), rep)
        rates[n] = n / t
        rows.append((f"surrogate, n = {n:,}", n / t, f"{1e3 * t:.3f} ms per call"))
    S = _samples(sur, 10_000, rng)
    Xm = np.column_stack([S[k] for k in sur.inputs])
    z = sur.design_space.scale(Xm)
    t = _median_time(lambda: legendre_design_matrix(z, sur.indices) @ sur.coef.T, max(args.repeat, 5))
    rows.append(("design matrix, n = 10,000", 10_000 / t, f"{1e3 * t:.2f} ms (plain (n x terms) evaluation)"))
    try:
        import openturns as ot

        fs = [_openturns_function(sur, i) for i in range(len(sur.outputs))]
        xs = ot.Sample(Xm)
        ref = np.column_stack([np.asarray(f(xs)).ravel() for f in fs])
        assert np.allclose(ref, sur.predict(Xm), rtol=1e-9, atol=1e-9), "OpenTURNS disagrees with numpy"
        t = _median_time(lambda: [f(xs) for f in fs], args.repeat)
        rows.append(("OpenTURNS, n = 10,000", 10_000 / t, f"{1e3 * t:.1f} ms (same expansion)"))
    except ImportError:  # pragma: no cover
        pass

    # --- table ----------------------------------------------------------------------------------------------
    print(f"cell model throughput ({len(sur.indices)} PCE terms, {len(sur.inputs)} inputs, "
          f"{len(sur.outputs)} outputs; medians of {args.repeat} runs)")
    print(f"{'what':<32}{'per second':>14}   note")
    print("-" * 78)
    for what, rate, note in rows:
        print(f"{what:<32}{rate:>14,.1f}   {note}")
    print("-" * 78)
    r4 = rates[10_000]
    print(f"surrogate at 10^4 samples / P2D re-solve : {r4 * t_resolve:>12,.0f} x   (target >= 1000 x)")
    print(f"surrogate at 10^4 samples / P2D batch    : {r4 * t_batch:>12,.0f} x")
    print(f"surrogate evaluations/s at 10^4 samples  : {r4:>12,.0f}     (target >= 100,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

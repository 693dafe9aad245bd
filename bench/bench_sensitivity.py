"""Sensitivity refresh: time of one refresh (chain + cell ANCOVA with bootstrap intervals), its parts, baselines
measured in the same run, and the convergence that motivates the recommended sample size.

    .venv/bin/python bench/bench_sensitivity.py [--samples 10000] [--boot 100] [--repeat 3] [--convergence]

Rows (medians of --repeat runs):
  * draw + chain         -- Monte Carlo of the scenario's inputs and the process chain (the twin already holds
                            these samples for its segments; a refresh from held samples skips this row)
  * chain ANCOVA+Sobol'  -- 8 inputs x 15 structural parameters, degree-2 expansion, block bootstrap
  * cell surrogate       -- capacity and energy_density on the chain samples
  * cell ANCOVA          -- 4 correlated inputs x 2 outputs, degree-3 expansion, block bootstrap
  * refresh (total)      -- twin.sensitivity.refresh: everything above, plus the Sankey flows
Baselines, same samples, same run:
  * per-sample bootstrap -- the same ANCOVA where every bootstrap resample re-reads all n samples (classic
                            row resampling) instead of resampling 200 blocks of precomputed moments
  * OpenTURNS ANCOVA     -- the cell's ANCOVA through OpenTURNS (FunctionalChaosAlgorithm + ot.ANCOVA), one
                            fit, no bootstrap intervals
Target (issue 5): a refresh under 5 s on 2 cores. One BLAS thread (as the commands use it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _median(f, repeat):
    ts, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def _per_sample_bootstrap(X, Y, inputs, outputs, degree, n_boot, seed=0):
    """ANCOVA with the classic bootstrap: each resample re-reads all n samples."""
    from models.sensitivity import _ancova_from, _augmented, _ci, _fit

    pce, psi, Ys = _fit(X, Y, inputs, outputs, degree)
    A = _augmented(psi, Ys)
    P = len(pce.indices)
    masks = pce.first_order_masks()
    rng = np.random.default_rng(seed)
    n = len(A)
    boot = []
    for _ in range(n_boot):
        Ab = A[rng.integers(0, n, n)]
        boot.append(_ancova_from(Ab.T @ Ab / n, P, masks)[0])
    return _ci(np.array(boot), 0.95)


def _openturns_ancova(X, Y, inputs, outputs, degree):
    import openturns as ot

    Xm = np.column_stack([np.asarray(X[k], float) for k in inputs])
    ok = np.all(np.isfinite(Xm), axis=1)
    Ym = np.column_stack([np.asarray(Y[k], float) for k in outputs])
    ok &= np.all(np.isfinite(Ym), axis=1)
    Xm, Ym = Xm[ok], Ym[ok]
    marg = [ot.Normal(float(c.mean()), float(c.std())) for c in Xm.T]
    dist = ot.JointDistribution(marg)
    enum = ot.LinearEnumerateFunction(len(inputs))
    basis = ot.OrthogonalProductPolynomialFactory([ot.HermiteFactory()] * len(inputs), enum)
    size = enum.getStrataCumulatedCardinal(degree)
    res = []
    for j in range(len(outputs)):
        algo = ot.FunctionalChaosAlgorithm(ot.Sample(Xm), ot.Sample(Ym[:, j:j + 1]), dist,
                                           ot.FixedStrategy(basis, size), ot.LeastSquaresStrategy())
        algo.run()
        a = ot.ANCOVA(algo.getResult(), ot.Sample(Xm))
        res.append((np.array(a.getIndices(0)), np.array(a.getUncorrelatedIndices(0))))
    return res


def main(argv=None) -> int:
    from threadpoolctl import threadpool_limits

    from models.sensitivity import ancova
    from twin.montecarlo import run
    from twin.product import cell_inputs_from
    from twin.scenario import load_scenario
    from twin.sensitivity import (DEFAULT_BOOT, DEFAULT_SAMPLES, cell_sensitivity, chain_outputs,
                                  chain_sensitivity, load_cell, refresh, uncertain_inputs)

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    p.add_argument("--boot", type=int, default=DEFAULT_BOOT)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--convergence", action="store_true",
                   help="also show time and 95 %% interval widths of the leading indices over sample sizes")
    a = p.parse_args(argv)
    sc = load_scenario()
    cell = load_cell("auto")
    n, B, R = a.samples, a.boot, a.repeat
    rows = []
    with threadpool_limits(1, user_api="blas"):
        t_draw, samples = _median(lambda: run(sc, n, 1), R)
        rows.append(("draw + chain", t_draw, ""))
        t_chain, chain = _median(lambda: chain_sensitivity(sc, samples, n_boot=B, seed=1), R)
        rows.append(("chain ANCOVA+Sobol'", t_chain, f"{len(chain['inputs'])} x {len(chain['outputs'])}, "
                                                      f"degree 2, {B} bootstrap"))
        if cell is not None:
            X = cell_inputs_from(samples, cell, n)
            t_sur, _ = _median(lambda: cell(X), R)
            rows.append(("cell surrogate", t_sur, f"{n} samples"))
            t_cell, cres = _median(lambda: cell_sensitivity(samples, cell, n_boot=B, seed=1), R)
            rows.append(("cell ANCOVA", t_cell, f"4 x 2, degree 3, {B} bootstrap ({cres['dropped']} dropped)"))
        t_tot, res = _median(lambda: refresh(sc, cell, n=n, seed=1, n_boot=B), R)
        rows.append(("refresh (total)", t_tot, "draw + chain + cell + Sankey flows"))
        t_tot_held, _ = _median(lambda: refresh(sc, cell, samples=samples, seed=1, n_boot=B), R)
        rows.append(("refresh (held samples)", t_tot_held, "the twin's case: samples already drawn"))
        # baselines
        inputs, outputs = uncertain_inputs(sc), chain_outputs(sc, samples)
        t_ps, _ = _median(lambda: _per_sample_bootstrap(samples, samples, inputs, outputs, 2, B), R)
        t_ours, _ = _median(lambda: ancova(samples, samples, inputs, outputs, degree=2, n_boot=B), R)
        base = [("chain ANCOVA, block bootstrap", t_ours, "ours (moments of 200 blocks)"),
                ("chain ANCOVA, per-sample bootstrap", t_ps, "baseline")]
        if cell is not None:
            Y = cell(X)
            ins = ["w_am", "w_ca", "m_dry", "rho_cal"]
            t_ot, _ = _median(lambda: _openturns_ancova(X, Y, ins, list(cell.outputs), 3), R)
            t_np0, _ = _median(lambda: ancova(X, Y, ins, list(cell.outputs), degree=3, n_boot=0), R)
            base += [("cell ANCOVA, numpy, no bootstrap", t_np0, "ours"),
                     ("cell ANCOVA, OpenTURNS, no bootstrap", t_ot, "baseline")]
    print(f"sensitivity refresh, paper use case, n = {n} samples, {B} bootstrap resamples, median of {R}, "
          f"1 BLAS thread, {'with' if cell is not None else 'WITHOUT'} cell surrogate")
    print(f"{'step':<40}{'time [s]':>10}  note")
    print("-" * 90)
    for name, t, note in rows:
        print(f"{name:<40}{t:10.3f}  {note}")
    print(f"\ntarget: refresh < 5 s -> {'met' if t_tot < 5 else 'NOT met'} ({t_tot:.2f} s; from held samples "
          f"{t_tot_held:.2f} s)")
    print(f"\n{'baseline comparison':<40}{'time [s]':>10}  ratio")
    print("-" * 90)
    for i in range(0, len(base), 2):
        (n1, t1, _), (n2, t2, _) = base[i], base[i + 1]
        print(f"{n1:<40}{t1:10.3f}")
        print(f"{n2:<40}{t2:10.3f}  {t2 / t1:5.1f}x slower")
    if a.convergence:
        print(f"\nconvergence (95 % bootstrap interval width of the leading indices; {B} resamples, 1 run each)")
        head = f"{'n':>8}{'refresh [s]':>13}{'rho_cal<-w_am':>15}{'m_dry<-x_solids':>17}"
        if cell is not None:
            head += f"{'capacity<-m_dry':>17}{'energy<-w_am':>14}{'energy<-rho_cal':>17}"
        print(head)
        with threadpool_limits(1, user_api="blas"):
            for m in (2000, 5000, 10000, 20000, 50000):
                t = time.perf_counter()
                r = refresh(sc, cell, n=m, seed=2, n_boot=B)
                dt = time.perf_counter() - t

                def w(res, o, i):
                    lo, hi = res["indices"][o][i]["ci"]["S"]
                    return hi - lo

                line = f"{m:8d}{dt:13.2f}{w(r['chain'], 'rho_cal', 'w_am'):15.4f}" \
                       f"{w(r['chain'], 'm_dry', 'x_solids'):17.4f}"
                if cell is not None:
                    line += f"{w(r['cell'], 'capacity', 'm_dry'):17.4f}{w(r['cell'], 'energy_density', 'w_am'):14.4f}" \
                            f"{w(r['cell'], 'energy_density', 'rho_cal'):17.4f}"
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Monte Carlo throughput of the process chain: vectorized evaluation against a plain per-sample Python loop,
measured in the same run.

    .venv/bin/python bench/bench_chain.py [--repeat 3]

Rows: samples/s of the chain evaluation on pre-drawn input samples (every input and structural parameter of
the paper's use case, eps_dry by its meta-model), for
  * loop (math)      -- per-sample Python loop of the same equations written with the math module, the fastest
                        plain Python, storing all 15 computed parameters per sample like the vectorized chain;
                        measured on 2e4 samples, its rate does not depend on n
  * loop (chain)     -- per-sample Python loop through the chain's own step functions (chain.evaluate on
                        floats); measured on 2e3 samples
  * numpy            -- ProcessChain.evaluate on whole arrays
  * numpy chunked    -- ProcessChain.evaluate_chunked, cache-sized chunks, 1 thread
  * numpy chunked xT -- the same on all cores (what `twin chain` uses from 2e5 samples)
and, separately, the cost of drawing the samples (twin.montecarlo.sample_inputs). Ratios are against
both loops. Medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from twin.montecarlo import chain_for, sample_inputs  # noqa: E402
from twin.scenario import load_scenario  # noqa: E402


def loop_math(inp: dict, n: int, eps_dry_model) -> float:
    """The chain, one sample at a time, in plain Python floats (meta-model evaluated per sample too), keeping
    every structural parameter of every sample as the vectorized chain does."""
    g = {k: (v if np.ndim(v) else np.full(n, v)).tolist() for k, v in inp.items()}
    kind, p = eps_dry_model.kind, eps_dry_model.params
    lo, hi = eps_dry_model.design_space.low[0], eps_dry_model.design_space.high[0]
    assert kind == "exponential"
    a, b, c = p["a"], p["b"], p["c"][0]
    names = ("rho_solids", "rho_slurry", "h_wet", "m_wet", "eps_dry", "m_dry", "h_dry", "rho_dry", "gamma_c",
             "eps_cal", "h_cal", "rho_cal", "phi_am", "phi_ca", "phi_pb")
    out = {k: [0.0] * n for k in names}
    for i in range(n):
        w_am, w_ca, w_pb = g["w_am"][i], g["w_ca"][i], g["w_pb"][i]
        r_am, r_ca, r_pb = g["rho_am"][i], g["rho_ca"][i], g["rho_pb"][i]
        x = g["x_solids"][i]
        sv = w_am / r_am + w_ca / r_ca + w_pb / r_pb
        rho_solids = 1.0 / sv
        rho_slurry = 1.0 / (x / rho_solids + (1.0 - x) / g["rho_solvent"][i])
        h_wet = 1e4 / 600.0 * g["flow_rate"][i] / (g["web_speed"][i] * g["coating_width"][i])
        m_wet = 0.1 * rho_slurry * h_wet
        if not lo <= m_wet <= hi:
            raise ValueError("outside design space")
        eps_dry = a + b * math.exp(c * (2.0 * (m_wet - lo) / (hi - lo) - 1.0))
        m_dry = m_wet * x
        h_dry = 10.0 * m_dry / (rho_solids * (1.0 - eps_dry))
        rho_dry = 10.0 * m_dry / h_dry
        gamma_c = g["gamma_c_intercept"][i] + g["gamma_c_per_loading"][i] * m_dry
        eps_min = g["eps_min"][i]
        eps_cal = eps_min + (eps_dry - eps_min) * math.exp(-g["line_load"][i] / gamma_c)
        h_cal = 10.0 * m_dry / (rho_solids * (1.0 - eps_cal))
        rho_cal = 10.0 * m_dry / h_cal
        solid = (1.0 - eps_cal) / sv
        phi_am, phi_ca, phi_pb = solid * w_am / r_am, solid * w_ca / r_ca, solid * w_pb / r_pb
        for k, v in zip(names, (rho_solids, rho_slurry, h_wet, m_wet, eps_dry, m_dry, h_dry, rho_dry, gamma_c,
                                eps_cal, h_cal, rho_cal, phi_am, phi_ca, phi_pb)):
            out[k][i] = v
    return out


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sc = load_scenario()
    chain = chain_for(sc)
    eps_model = next(s.func for s in chain.steps if s.outputs == ("eps_dry",))
    threads = len(os.sched_getaffinity(0))
    rows = []

    n_loop = 20_000
    inp = sample_inputs(sc, n_loop, seed=1)
    t = timed(lambda: loop_math(inp, n_loop, eps_model), args.repeat)
    base = n_loop / t
    rows.append(("loop (math)", n_loop, t, base))
    n_loop2 = 2_000
    inp2 = sample_inputs(sc, n_loop2, seed=1)

    def loop_chain():
        for i in range(n_loop2):
            chain.evaluate({k: (float(v[i]) if np.ndim(v) else v) for k, v in inp2.items()})

    t = timed(loop_chain, args.repeat)
    base_chain = n_loop2 / t
    rows.append(("loop (chain)", n_loop2, t, base_chain))

    for n in (10_000, 100_000, 1_000_000):
        inp = sample_inputs(sc, n, seed=1)
        t = timed(lambda: sample_inputs(sc, n, seed=1), args.repeat)
        rows.append(("sampling inputs", n, t, n / t))
        t = timed(lambda: chain.evaluate(inp), args.repeat)
        rows.append(("numpy", n, t, n / t))
        t = timed(lambda: chain.evaluate_chunked(inp, n, chunk=32768, threads=1), args.repeat)
        rows.append(("numpy chunked", n, t, n / t))
        t = timed(lambda: chain.evaluate_chunked(inp, n, chunk=32768, threads=threads), args.repeat)
        rows.append((f"numpy chunked x{threads}", n, t, n / t))

    print(f"process chain Monte Carlo throughput ({threads} cores, median of {args.repeat})")
    print(f"{'method':<22}{'samples':>10}{'time [s]':>12}{'samples/s':>14}{'vs loop (math)':>16}"
          f"{'vs loop (chain)':>17}")
    for name, n, t, rate in rows:
        print(f"{name:<22}{n:>10}{t:>12.4f}{rate:>14.3g}{rate / base:>15.1f}x{rate / base_chain:>16.0f}x")


if __name__ == "__main__":
    main()

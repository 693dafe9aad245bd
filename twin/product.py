"""The product model: the process chain followed by the cell surrogate, evaluated on Monte Carlo samples.

``ProductModel(chain, cell)(inputs)`` returns every input, every structural parameter the chain computes and,
when a cell surrogate is given and a cell output is asked for, capacity and energy_density. It is the model the
analyses (tolerances, robust setpoints, sensitivities) evaluate; the cell surrogate runs only when needed, since
the chain alone is much cheaper.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

import models
from models.chain import ProcessChain

from .metamodels import load_metamodel

__all__ = ["ProductModel", "cell_inputs_from", "analysis_chain"]


@lru_cache(maxsize=8)
def _nan_chain(paths: tuple[tuple[str, str, float], ...]) -> ProcessChain:
    return models.build_chain([load_metamodel(p, policy="nan") for _, p, _ in paths])


def analysis_chain(scenario) -> ProcessChain:
    """The scenario's process chain with meta-models that return NaN outside their design space.

    Tolerance and setpoint searches try wide input spreads; a sample a meta-model cannot vouch for (e.g. m_wet
    below the drying DoE) must count as out of spec rather than abort the search (the twin's own chain,
    :func:`twin.montecarlo.chain_for`, raises there).
    """
    key = tuple(sorted((out, str(p), Path(p).stat().st_mtime) for out, p in scenario.metamodel_paths.items()))
    return _nan_chain(key)


def cell_inputs_from(values: Mapping[str, object], cell, n: int | None = None,
                     close_pb: bool = True) -> dict[str, np.ndarray]:
    """The cell surrogate's inputs taken from chain values (scalars broadcast to ``n`` samples).

    With ``close_pb`` (default) a cell model that takes ``w_pb`` gets the paper's convention
    w_pb = 1 - w_am - w_ca (text of eq. 17): the cell model sees a formulation that sums to one, whatever the
    chain's (unclosed) fractions are, and its inputs are w_am, w_ca, m_dry, rho_cal as in Table 1.
    """
    names = tuple(getattr(cell, "inputs", ()))
    if n is None:
        n = max((np.size(v) for v in values.values()), default=1)
    out = {}
    for k in names:
        if k == "w_pb" and close_pb and "w_am" in values and "w_ca" in values:
            v = 1.0 - np.asarray(values["w_am"], float) - np.asarray(values["w_ca"], float)
        elif k in values:
            v = np.asarray(values[k], float)
        else:
            raise KeyError(f"the cell model needs {k!r}, which the process chain does not provide")
        out[k] = np.broadcast_to(v, (n,)) if v.ndim == 0 else v
    return out


class ProductModel:
    """Process chain + optional cell surrogate as one vectorized model.

    Parameters
    ----------
    chain : the process chain
    cell : the cell surrogate (``.inputs``, ``.outputs``, ``__call__(samples) -> dict``) or ``None``
    outputs : quantities the caller needs; the cell runs only if one of them is a cell output (default: all)
    close_pb : give the cell w_pb = 1 - w_am - w_ca (the paper's convention; see :func:`cell_inputs_from`)
    """

    def __init__(self, chain: ProcessChain, cell=None, outputs: Iterable[str] | None = None,
                 close_pb: bool = True):
        self.chain = chain
        self.cell = cell
        self.close_pb = close_pb
        self.cell_outputs: tuple[str, ...] = tuple(getattr(cell, "outputs", ())) if cell is not None else ()
        wanted = None if outputs is None else set(outputs)
        self._run_cell = cell is not None and (wanted is None or bool(wanted & set(self.cell_outputs)))

    def computes(self, name: str) -> bool:
        """Whether ``name`` is computed (by the chain or the cell)."""
        return self.chain.producer(name) is not None or name in self.cell_outputs

    def __call__(self, inputs: Mapping[str, object]) -> dict[str, object]:
        values = self.chain.evaluate(inputs)
        if self._run_cell:
            n = max((np.size(v) for v in values.values()), default=1)
            res = self.cell(cell_inputs_from(values, self.cell, n, self.close_pb))
            for k in self.cell_outputs:
                values[k] = np.asarray(res[k], float)
        return values

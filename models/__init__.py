"""Science of electrode-twin: pure, vectorized models of the electrode process chain and the cell.

numpy in, numpy out, canonical names and units (see :mod:`models.quantities`); no I/O, no asyncio, no config
files. Importing this package registers the analytical process steps of the cathode line
(:mod:`models.mixing`, :mod:`models.coating`, :mod:`models.drying`, :mod:`models.calendering`).
"""

from __future__ import annotations

from collections.abc import Iterable

from . import calendering, coating, drying, mixing  # noqa: F401  (registers the analytical steps)
from .chain import REGISTRY, ChainError, ProcessChain, Step, step
from .quantities import QUANTITIES, Quantity, quantity

__all__ = ["ProcessChain", "Step", "step", "REGISTRY", "ChainError", "QUANTITIES", "Quantity", "quantity",
           "build_chain"]


def build_chain(metamodels: Iterable = (), steps: Iterable[Step] | None = None) -> ProcessChain:
    """The process chain of registered steps plus fitted meta-models of numerical process models.

    Parameters
    ----------
    metamodels : fitted :class:`models.metamodel.MetaModel` objects; each becomes a step producing its output
        in the stage of that output quantity
    steps : analytical steps to use instead of everything registered
    """
    base = list(REGISTRY if steps is None else steps)
    extra = [m.as_step(quantity(m.output).stage) for m in metamodels]
    return ProcessChain(base + extra)

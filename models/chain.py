"""Process chain assembled from process-step model containers by matching canonical names.

Each process step is a pure function whose parameter names *are* canonical quantity names and whose return
value is one (or a tuple of) canonical quantities. The :func:`step` decorator records which quantities a
function produces and registers it; a :class:`ProcessChain` links registered steps into a small directed
acyclic graph: a step runs once every one of its inputs is either given or produced by another step. Giving a
quantity that a step would produce overrides that step (e.g. a measured ``eps_dry`` replaces the drying
meta-model). Adding a process step (an anode line, slitting, a new drying model) means writing one function
with canonical argument names and decorating it, nothing else.

Numerical process models enter the chain the same way, through :meth:`Step.from_callable` (see
:mod:`models.metamodel`).

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, section 2.2, eq. (1): SP_out = f(PP, SP_in).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Step", "step", "ProcessChain", "REGISTRY", "ChainError"]


class ChainError(ValueError):
    """The chain cannot be assembled or evaluated (a missing input, two producers, a cycle)."""


@dataclass(frozen=True)
class Step:
    """One model container: ``outputs = func(**inputs)``.

    Attributes
    ----------
    name : name of the step (the function name unless given)
    stage : process stage (``mixing``, ``coating``, ``drying``, ``calendering`` ...)
    func : the pure model function; called with keyword arguments named after ``inputs``
    inputs : canonical names of the arguments
    outputs : canonical names of the returned values (a tuple is returned when there are several)
    """

    name: str
    stage: str
    func: Callable = field(compare=False)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @classmethod
    def from_callable(cls, func: Callable, stage: str, inputs: Iterable[str], outputs: str | Iterable[str],
                      name: str | None = None) -> "Step":
        """Wrap any callable taking the canonical ``inputs`` as keyword arguments (e.g. a fitted meta-model)."""
        outs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        return cls(name or getattr(func, "__name__", outs[0]), stage, func, tuple(inputs), outs)

    def __call__(self, values: Mapping[str, object]) -> dict[str, object]:
        result = self.func(**{n: values[n] for n in self.inputs})
        if len(self.outputs) == 1:
            return {self.outputs[0]: result}
        return dict(zip(self.outputs, result, strict=True))


#: Steps registered with :func:`step`, in registration (import) order.
REGISTRY: list[Step] = []


def step(stage: str, outputs: str | Iterable[str], registry: list[Step] | None = None):
    """Decorator: register a pure model function as a process step.

    The function's positional parameter names are taken as the step's canonical inputs. The function itself is
    returned unchanged (it stays a plain function you can call with arrays) and carries the :class:`Step` as
    ``func.step``.

    Examples
    --------
    >>> @step("slitting", outputs="coating_width")          # doctest: +SKIP
    ... def slit_width(coating_width, n_lanes): ...
    """

    def register(func: Callable) -> Callable:
        params = [p.name for p in inspect.signature(func).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        s = Step.from_callable(func, stage, params, outputs, name=func.__name__)
        (REGISTRY if registry is None else registry).append(s)
        func.step = s
        return func

    return register


class ProcessChain:
    """A DAG of steps linked by canonical names.

    Parameters
    ----------
    steps : the steps; no two may produce the same quantity.

    Notes
    -----
    The chain is vectorized through its steps: every input may be a scalar (a constant) or an array of Monte
    Carlo samples, broadcast as numpy broadcasts.
    """

    def __init__(self, steps: Iterable[Step]):
        self.steps: tuple[Step, ...] = tuple(steps)
        self._producer: dict[str, Step] = {}
        for s in self.steps:
            for out in s.outputs:
                if out in self._producer:
                    raise ChainError(f"{out} is produced by two steps: {self._producer[out].name} and {s.name}")
                self._producer[out] = s
        self._plans: dict[frozenset[str], tuple[Step, ...]] = {}

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every quantity some step can produce."""
        return tuple(self._producer)

    def producer(self, name: str) -> Step | None:
        """The step that produces ``name``, or ``None`` for a free input."""
        return self._producer.get(name)

    def plan(self, given: Iterable[str]) -> tuple[Step, ...]:
        """The steps to run, in dependency order, to compute everything not ``given``.

        Raises :class:`ChainError` naming each missing input and the step (and output) that needs it.
        """
        key = frozenset(given)
        if key in self._plans:
            return self._plans[key]
        order: list[Step] = []
        state: dict[str, int] = {}  # step name -> 1 visiting, 2 done
        missing: dict[str, list[str]] = {}

        def available(name: str, needed_by: str) -> bool:
            if name in key:
                return True
            s = self._producer.get(name)
            if s is None:
                missing.setdefault(name, []).append(needed_by)
                return False
            return visit(s)

        def visit(s: Step) -> bool:
            st = state.get(s.name)
            if st == 2:
                return True
            if st == 1:
                raise ChainError(f"cycle in the process chain through step {s.name}")
            state[s.name] = 1
            ok = all([available(i, f"{s.name} ({', '.join(s.outputs)})") for i in s.inputs])
            state[s.name] = 2
            if ok:
                order.append(s)
            return ok

        for s in self.steps:
            if all(o in key for o in s.outputs):
                continue  # overridden by a given value
            visit(s)
        if missing:
            lines = [f"{name} (needed by {', '.join(sorted(set(by)))})" for name, by in sorted(missing.items())]
            raise ChainError("missing input(s): " + "; ".join(lines))
        plan = tuple(order)
        self._plans[key] = plan
        return plan

    def required_inputs(self) -> tuple[str, ...]:
        """Free inputs of the full chain (quantities no step produces), in first-use order."""
        seen: dict[str, None] = {}
        for s in self.steps:
            for i in s.inputs:
                if i not in self._producer:
                    seen.setdefault(i, None)
        return tuple(seen)

    def evaluate(self, inputs: Mapping[str, object]) -> dict[str, object]:
        """Run the chain. Returns the inputs plus every produced quantity (given values are never recomputed)."""
        values: dict[str, object] = dict(inputs)
        for s in self.plan(values.keys()):
            for name, val in s(values).items():
                if name not in inputs:
                    values[name] = val
        return values

    def evaluate_chunked(self, inputs: Mapping[str, object], n: int, chunk: int = 65536,
                         threads: int = 1) -> dict[str, np.ndarray]:
        """Run the chain over ``n`` samples in cache-sized chunks, optionally on several threads.

        numpy releases the GIL inside elementwise kernels, so chunks run in parallel on ``threads`` cores;
        chunks small enough to stay in cache avoid the memory-bandwidth ceiling of whole-array evaluation.
        Scalar inputs are broadcast; every output is returned as an array of length ``n``.
        """
        arrays = {k: v for k, v in inputs.items() if np.ndim(v) > 0}
        scalars = {k: v for k, v in inputs.items() if np.ndim(v) == 0}
        plan = self.plan(inputs.keys())
        names = list(dict.fromkeys(o for s in plan for o in s.outputs if o not in inputs))
        out = {k: np.empty(n) for k in names}

        def work(lo: int) -> None:
            hi = min(lo + chunk, n)
            vals: dict[str, object] = dict(scalars)
            vals.update({k: v[lo:hi] for k, v in arrays.items()})
            for s in plan:
                for name, val in s(vals).items():
                    if name not in inputs:
                        vals[name] = val
            for k in names:
                out[k][lo:hi] = vals[k]

        starts = range(0, n, chunk)
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, starts))
        else:
            for lo in starts:
                work(lo)
        result: dict[str, np.ndarray] = {k: np.broadcast_to(np.asarray(v, float), (n,)) for k, v in scalars.items()}
        result.update({k: np.asarray(v) for k, v in arrays.items()})
        result.update(out)
        return result

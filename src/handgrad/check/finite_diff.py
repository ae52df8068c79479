"""Central finite differences in float64, aware of kinks (ReLU, LeakyReLU, any max).

For a coordinate θ_j of a tensor (an input or a parameter) and a scalar function f:

    slope from the right  s⁺ = (f(θ + h e_j) − f(θ)) / h
    slope from the left   s⁻ = (f(θ) − f(θ − h e_j)) / h
    central difference    c  = (s⁺ + s⁻) / 2,          h = max(1e-6, 1e-12 · |θ_j|)

(An absolute step: a step that grew with |θ_j| would blur functions that vary on a scale much
smaller than θ_j, e.g. a normalization of values far from 0; 1e-6 stays far above θ_j's
rounding unit for |θ_j| up to 1e6.)

Where f is smooth the hand-written derivative must equal c. Where a kink lies within the step
(a ReLU input within h of 0) c is a meaningless average of two slopes: there the two one-sided
slopes differ, and the hand-written value is accepted when it lies between them (it is then a
subgradient; torch and handgrad take 0 for ReLU at 0, ``x >= 0`` would take 1, both are right).
Such coordinates are counted separately as ``kinks``; a correct gradient at a kink is never an
error, and a hand-written value away from both slopes still is.

``f`` is given as ``evaluate() -> (f(θ) − f(θ₀), Σ|terms|)``: the change from the unperturbed
value, summed term by term (so the rounding error does not grow with |f|), and the magnitude
of the summed terms, from which the rounding noise of the difference is estimated.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import torch
from torch import Tensor

STEP = 1e-6
# Rounding noise of a difference of sums, per unit of summed magnitude (generous: forward
# passes round at every operation, not once).
_NOISE = 64 * torch.finfo(torch.float64).eps

# One-sided slopes that differ by more than this fraction of their size mark a kink.
KINK_JUMP = 1e-3

Evaluate = Callable[[], tuple[float, float]]


@dataclass(frozen=True)
class Probe:
    """The one-sided slopes at one coordinate (flat index) and their rounding noise."""

    index: int
    plus: float
    minus: float
    noise: float

    @property
    def central(self) -> float:
        return 0.5 * (self.plus + self.minus)


@dataclass(frozen=True)
class FDCoordinate:
    """One checked coordinate: the hand-written value against the finite differences."""

    index: tuple[int, ...]
    hand: float
    central: float
    low: float
    high: float
    kink: bool
    ok: bool


@dataclass
class FDResult:
    """Finite differences on sampled coordinates of one gradient."""

    coordinates: list[FDCoordinate] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return len(self.coordinates)

    @property
    def agreed(self) -> int:
        return sum(c.ok for c in self.coordinates)

    @property
    def kinks(self) -> int:
        return sum(c.kink for c in self.coordinates)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.coordinates)

    @property
    def failures(self) -> list[FDCoordinate]:
        return [c for c in self.coordinates if not c.ok]

    @property
    def max_abs_diff(self) -> float:
        """Largest |hand − central| over the smooth coordinates (kinks have no single value)."""
        diffs = [abs(c.hand - c.central) for c in self.coordinates if not c.kink]
        return max(diffs, default=0.0)

    @property
    def max_central(self) -> float:
        return max((abs(c.central) for c in self.coordinates if not c.kink), default=0.0)


def sample_indices(numel: int, k: int, generator: torch.Generator) -> list[int]:
    """All flat indices if there are at most ``k``, else ``k`` of them drawn without replacement."""
    if numel <= k:
        return list(range(numel))
    return sorted(torch.randperm(numel, generator=generator)[:k].tolist())


def probe(evaluate: Evaluate, tensor: Tensor, indices: list[int]) -> list[Probe]:
    """Perturb ``tensor`` (float64, contiguous) in place at each index and measure both slopes.

    Every coordinate is restored to its exact original value.
    """
    flat = tensor.view(-1)
    probes = []
    for j in indices:
        value = float(flat[j])
        step = max(STEP, 1e-12 * abs(value))
        up, down = value + step, value - step
        flat[j] = up
        d_plus, m_plus = evaluate()
        flat[j] = down
        d_minus, m_minus = evaluate()
        flat[j] = value
        h_plus, h_minus = up - value, value - down  # the steps actually taken, after rounding
        noise = _NOISE * max(m_plus, m_minus) / min(h_plus, h_minus)
        probes.append(Probe(j, d_plus / h_plus, -d_minus / h_minus, noise))
    return probes


def judge(
    probes: list[Probe],
    hand: Tensor,
    *,
    rtol: float,
    scale: float,
    structural_kinks: Collection[int] = (),
    peer: Tensor | None = None,
) -> FDResult:
    """Compare the hand-written gradient with the probes.

    Args:
        probes: from ``probe`` on the coordinates to check.
        hand: the hand-written gradient (same shape as the probed tensor).
        rtol: allowed error relative to ``max(scale, |c|)``, on top of the rounding noise.
        scale: the gradient's scale S (see ``compare``).
        structural_kinks: flat indices known to lie within the step of a kink (a ReLU input
            near 0); they are judged by the one-sided slopes and counted as kinks.
        peer: autograd's gradient in the same dtype, if known. Where the float64 truth is
            ill-conditioned (a float32 normalization of a tiny variance), the hand-written value
            is accepted when it is no farther from the truth than twice torch's own.
    """
    flat = hand.detach().reshape(-1).double()
    peer_flat = peer.detach().reshape(-1).double() if peer is not None else None
    shape = tuple(hand.shape)
    result = FDResult()
    for p in probes:
        value = float(flat[p.index])
        tol = rtol * max(scale, abs(p.central)) + p.noise
        low, high = min(p.plus, p.minus), max(p.plus, p.minus)
        structural = p.index in structural_kinks
        # A smooth f has s⁺ − s⁻ ≈ h·f'', far below this unless |f''| > 1000·S.
        jumps = high - low > max(2 * tol, KINK_JUMP * max(abs(p.plus), abs(p.minus), scale))
        if abs(value - p.central) <= tol and not structural:
            kink, ok = jumps, True
        else:
            kink = structural or high - low > 2 * tol
            miss = _miss(value, p, kink)
            ok = miss <= tol
            if not ok and peer_flat is not None:
                ok = miss <= 2 * _miss(float(peer_flat[p.index]), p, kink) + tol
        index = unravel(p.index, shape)
        result.coordinates.append(FDCoordinate(index, value, p.central, low, high, kink, ok))
    return result


def _miss(value: float, p: Probe, kink: bool) -> float:
    """How far ``value`` is from the finite differences: from the interval between the two
    one-sided slopes at a kink, from the central difference elsewhere."""
    if kink:
        return max(min(p.plus, p.minus) - value, value - max(p.plus, p.minus), 0.0)
    return abs(value - p.central)


def unravel(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The multi-index of ``flat_index`` in a row-major tensor of ``shape``."""
    index = []
    for size in reversed(shape):
        flat_index, i = divmod(flat_index, size)
        index.append(i)
    return tuple(reversed(index))


def full_gradient(evaluate: Evaluate, tensor: Tensor) -> Tensor:
    """The central-difference gradient at every coordinate of ``tensor`` (float64)."""
    probes = probe(evaluate, tensor, list(range(tensor.numel())))
    central = torch.tensor([p.central for p in probes], dtype=torch.float64)
    return central.reshape(tensor.shape)

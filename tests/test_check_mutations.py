"""The mutation battery: hand-injected backward bugs, each caught, located and named.

Every mutant subclasses a handgrad layer or loss and overrides only ``backward`` with one classic
slip, sits at a known position in a small network, and must make ``gradcheck`` fail with
``first_faulty`` naming that position and the diagnosis naming the slip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from handgrad import nn
from handgrad.check import diagnose as d
from handgrad.check import gradcheck

N, D_IN, HIDDEN, C = 5, 4, 6, 3


class Seen:
    """Keeps the inputs of the last call in ``seen``, so a mutant's backward relies on no
    private attribute of the layer it breaks (its forward stays the layer's own)."""

    seen: tuple[Tensor, ...]

    def __call__(self, *inputs: Tensor) -> Tensor:
        self.seen = inputs
        return super().__call__(*inputs)  # type: ignore[misc]


def _normalized(x: Tensor, dims: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor]:
    """x̂ and 1/√(σ² + ε) over ``dims``."""
    mean = x.mean(dims, keepdim=True)
    inv_std = torch.rsqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
    return (x - mean) * inv_std, inv_std


# -- Linear -------------------------------------------------------------------------------------
class SeenLinear(Seen, nn.Linear):
    @property
    def x(self) -> Tensor:
        return self.seen[0]


class LinearWeightTwice(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad += 2 * grad_output.t() @ self.x  # bug: factor 2
        self.bias.grad += grad_output.sum(0)
        return grad_output @ self.weight


class LinearWeightHalf(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad += 0.5 * grad_output.t() @ self.x  # bug: factor 1/2
        self.bias.grad += grad_output.sum(0)
        return grad_output @ self.weight


class LinearInputSign(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad += grad_output.t() @ self.x
        self.bias.grad += grad_output.sum(0)
        return -(grad_output @ self.weight)  # bug: sign


class LinearInputExtraMean(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad += grad_output.t() @ self.x
        self.bias.grad += grad_output.sum(0)
        return grad_output @ self.weight / grad_output.shape[0]  # bug: extra 1/N


class LinearWeightTransposed(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad = self.x.t() @ grad_output  # bug: (D_in, D_out), the transpose
        self.bias.grad += grad_output.sum(0)
        return grad_output @ self.weight


class SquareLinearWeightTransposed(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad += (grad_output.t() @ self.x).t()  # bug: transposed, square W
        self.bias.grad += grad_output.sum(0)
        return grad_output @ self.weight


class SquareLinearInputTransposed(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad += grad_output.t() @ self.x
        self.bias.grad += grad_output.sum(0)
        return grad_output @ self.weight.t()  # bug: Wᵀ for W


class LinearBiasNotSummed(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad += grad_output.t() @ self.x
        self.bias.grad = self.bias.grad + grad_output  # bug: (N, D_out), not summed
        return grad_output @ self.weight


class LinearBiasNotSummedInPlace(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad += grad_output.t() @ self.x
        self.bias.grad += grad_output  # bug: (N, D_out) into (D_out,)
        return grad_output @ self.weight


class LinearBiasMean(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad += grad_output.t() @ self.x
        self.bias.grad += grad_output.mean(0)  # bug: mean over the batch, not the sum
        return grad_output @ self.weight


class LinearBiasLastSample(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad += grad_output.t() @ self.x
        self.bias.grad += grad_output[-1]  # bug: the last sample only
        return grad_output @ self.weight


class LinearNotAccumulated(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad = grad_output.t() @ self.x  # bug: = instead of +=
        self.bias.grad += grad_output.sum(0)
        return grad_output @ self.weight


class LinearWeightForgotten(SeenLinear):
    def backward(self, grad_output: Tensor) -> Tensor:
        self.bias.grad += grad_output.sum(0)  # bug: weight.grad never written
        return grad_output @ self.weight


# -- activations --------------------------------------------------------------------------------
class TanhAtOutput(Seen, nn.Tanh):
    def backward(self, grad_output: Tensor) -> Tensor:
        y = torch.tanh(self.seen[0])
        return grad_output * (1 - torch.tanh(y) ** 2)  # bug: tanh'(y), not tanh'(x)


class TanhWrongDerivative(Seen, nn.Tanh):
    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output * (1 - torch.tanh(self.seen[0]))  # bug: 1 − y for 1 − y²


class SigmoidFormulaAtInput(Seen, nn.Sigmoid):
    def backward(self, grad_output: Tensor) -> Tensor:
        x = self.seen[0]
        return grad_output * x * (1 - x)  # bug: y(1 − y) evaluated at x


class SigmoidWrongDerivative(Seen, nn.Sigmoid):
    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output * torch.sigmoid(self.seen[0])  # bug: y for y(1 − y)


class ReLUMaskFromGradient(nn.ReLU):
    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output * (grad_output > 0)  # bug: mask from dL/dy, not from x


class ReLUNoMask(nn.ReLU):
    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output.clone()  # bug: derivative missing


class LeakyReLUWrongSlope(Seen, nn.LeakyReLU):
    def backward(self, grad_output: Tensor) -> Tensor:
        return torch.where(self.seen[0] > 0, grad_output, 0.0)  # bug: ReLU's derivative


class GELUAtOutput(Seen, nn.GELU):
    def backward(self, grad_output: Tensor) -> Tensor:
        y = torch.nn.functional.gelu(self.seen[0])
        with torch.enable_grad():  # f'(y) by autograd, to write the bug briefly
            point = y.clone().requires_grad_(True)
            (slope,) = torch.autograd.grad(torch.nn.functional.gelu(point).sum(), point)
        return grad_output * slope  # bug: GELU'(y), not GELU'(x)


class SoftmaxDiagonal(Seen, nn.Softmax):
    def backward(self, grad_output: Tensor) -> Tensor:
        return torch.softmax(self.seen[0], -1) * grad_output  # bug: Jacobian diagonal only


class LogSoftmaxNoSum(nn.LogSoftmax):
    def backward(self, grad_output: Tensor) -> Tensor:
        return grad_output.clone()  # bug: the −softmax · Σ term is missing


# -- normalization ------------------------------------------------------------------------------
class BatchNormMeanTermDropped(Seen, nn.BatchNorm1d):
    def backward(self, grad_output: Tensor) -> Tensor:
        x_hat, inv_std = _normalized(self.seen[0], (0,), self.eps)
        self.weight.grad += (grad_output * x_hat).sum(0)
        self.bias.grad += grad_output.sum(0)
        g = grad_output * self.weight
        return (g - x_hat * (g * x_hat).mean(0)) * inv_std  # bug: − mean(g) dropped


class BatchNormGammaSign(Seen, nn.BatchNorm1d):
    def backward(self, grad_output: Tensor) -> Tensor:
        x_hat, inv_std = _normalized(self.seen[0], (0,), self.eps)
        self.weight.grad -= (grad_output * x_hat).sum(0)  # bug: sign
        self.bias.grad += grad_output.sum(0)
        g = grad_output * self.weight
        return (g - g.mean(0) - x_hat * (g * x_hat).mean(0)) * inv_std


class LayerNormMeanTermDropped(Seen, nn.LayerNorm):
    def backward(self, grad_output: Tensor) -> Tensor:
        x_hat, inv_std = _normalized(self.seen[0], (-1,), self.eps)
        self.weight.grad += (grad_output * x_hat).sum(0)
        self.bias.grad += grad_output.sum(0)
        g = grad_output * self.weight
        return (g - x_hat * (g * x_hat).mean(-1, keepdim=True)) * inv_std  # bug: − mean g


class LayerNormVarianceTermDropped(Seen, nn.LayerNorm):
    def backward(self, grad_output: Tensor) -> Tensor:
        x_hat, inv_std = _normalized(self.seen[0], (-1,), self.eps)
        self.weight.grad += (grad_output * x_hat).sum(0)
        self.bias.grad += grad_output.sum(0)
        g = grad_output * self.weight
        return (g - g.mean(-1, keepdim=True)) * inv_std  # bug: − x̂·mean(g·x̂) dropped


# -- losses -------------------------------------------------------------------------------------
class MSEHalf(Seen, nn.MSELoss):
    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        x, t = self.seen
        return (x - t) / x.numel()  # bug: the 2 of d(x²)/dx is missing


class MSENoMean(Seen, nn.MSELoss):
    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        x, t = self.seen
        return 2 * (x - t)  # bug: the 1/(N·C) of the mean is missing


class MSESign(Seen, nn.MSELoss):
    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        x, t = self.seen
        return 2 * (t - x) / x.numel()  # bug: t − x


class CrossEntropyWithoutSoftmax(Seen, nn.CrossEntropyLoss):
    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        x, t = self.seen
        one_hot = torch.zeros_like(x).scatter_(1, t.unsqueeze(1), 1.0)
        return -one_hot / x.shape[0]  # bug: the softmax(x) term is missing


class CrossEntropyExtraMean(Seen, nn.CrossEntropyLoss):
    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        return super().backward() / self.seen[0].shape[0]  # bug: divided by N twice


class CrossEntropyNoMean(Seen, nn.CrossEntropyLoss):
    def backward(self, grad_output: Tensor | float | None = None) -> Tensor:
        return super().backward() * self.seen[0].shape[0]  # bug: the 1/N is missing


@dataclass(frozen=True)
class Mutant:
    """A network with one bug at ``where``, and the pattern the diagnosis must name."""

    build: Callable[[], tuple[nn.Module, nn.Loss]]
    where: str
    pattern: str
    target: str = "classes"  # "classes" or "values"


def mlp_with(layer: nn.Module, position: int, act: nn.Module | None = None) -> nn.Sequential:
    """Linear(4, 6) · act · Linear(6, 3), with ``layer`` replacing position 0, 1 or 2."""
    layers: list[nn.Module] = [nn.Linear(D_IN, HIDDEN), act or nn.Tanh(), nn.Linear(HIDDEN, C)]
    layers[position] = layer
    return nn.Sequential(*layers)


def with_layer(make: Callable[[], nn.Module], position: int, act: nn.Module | None = None):
    return lambda: (mlp_with(make(), position, act), nn.CrossEntropyLoss())


def with_loss(make: Callable[[], nn.Loss]):
    return lambda: (mlp_with(nn.Linear(D_IN, HIDDEN), 0), make())


def normed(make: Callable[[], nn.Module]):
    """Linear · Norm · Tanh · Linear, the norm at position 1."""
    return lambda: (
        nn.Sequential(nn.Linear(D_IN, HIDDEN), make(), nn.Tanh(), nn.Linear(HIDDEN, C)),
        nn.CrossEntropyLoss(),
    )


def square(make: Callable[[int, int], nn.Module]):
    """Linear(4, 6) · Tanh · square Linear(6, 6) · Tanh · Linear(6, 3), the square one at 2."""
    return lambda: (
        nn.Sequential(
            nn.Linear(D_IN, HIDDEN),
            nn.Tanh(),
            make(HIDDEN, HIDDEN),
            nn.Tanh(),
            nn.Linear(HIDDEN, C),
        ),
        nn.CrossEntropyLoss(),
    )


MUTANTS: dict[str, Mutant] = {
    "linear weight ×2": Mutant(
        with_layer(lambda: LinearWeightTwice(HIDDEN, C), 2), "2", d.FACTOR_2
    ),
    "linear weight ×1/2": Mutant(
        with_layer(lambda: LinearWeightHalf(D_IN, HIDDEN), 0), "0", d.FACTOR_HALF
    ),
    "linear input sign": Mutant(with_layer(lambda: LinearInputSign(HIDDEN, C), 2), "2", d.SIGN),
    "linear input extra 1/N": Mutant(
        with_layer(lambda: LinearInputExtraMean(HIDDEN, C), 2), "2", d.FACTOR_INV_N
    ),
    "linear weight transposed": Mutant(
        with_layer(lambda: LinearWeightTransposed(HIDDEN, C), 2), "2", d.TRANSPOSE
    ),
    "square weight transposed": Mutant(square(SquareLinearWeightTransposed), "2", d.TRANSPOSE),
    "square input uses Wᵀ": Mutant(square(SquareLinearInputTransposed), "2", d.TRANSPOSE),
    "bias not summed": Mutant(
        with_layer(lambda: LinearBiasNotSummed(HIDDEN, C), 2), "2", d.BIAS_NOT_SUMMED
    ),
    "bias not summed, +=": Mutant(
        with_layer(lambda: LinearBiasNotSummedInPlace(D_IN, HIDDEN), 0), "0", d.BIAS_NOT_SUMMED
    ),
    "bias mean": Mutant(with_layer(lambda: LinearBiasMean(HIDDEN, C), 2), "2", d.FACTOR_INV_N),
    "bias last sample": Mutant(
        with_layer(lambda: LinearBiasLastSample(D_IN, HIDDEN), 0), "0", d.BIAS_NOT_SUMMED
    ),
    "not accumulated": Mutant(
        with_layer(lambda: LinearNotAccumulated(HIDDEN, C), 2), "2", d.NOT_ACCUMULATED
    ),
    "weight grad forgotten": Mutant(
        with_layer(lambda: LinearWeightForgotten(D_IN, HIDDEN), 0), "0", d.ZEROS
    ),
    "tanh at the output": Mutant(with_layer(TanhAtOutput, 1), "1", d.AT_OUTPUT),
    "tanh wrong derivative": Mutant(with_layer(TanhWrongDerivative, 1), "1", d.UNRECOGNISED),
    "sigmoid formula at the input": Mutant(
        with_layer(SigmoidFormulaAtInput, 1), "1", d.OUTPUT_FORM_AT_INPUT
    ),
    "sigmoid wrong derivative": Mutant(with_layer(SigmoidWrongDerivative, 1), "1", d.UNRECOGNISED),
    "relu mask from the gradient": Mutant(
        with_layer(ReLUMaskFromGradient, 1), "1", d.MASK_FROM_GRADIENT
    ),
    "relu mask missing": Mutant(with_layer(ReLUNoMask, 1), "1", d.DERIVATIVE_MISSING),
    "leaky relu slope": Mutant(
        with_layer(lambda: LeakyReLUWrongSlope(0.1), 1), "1", d.UNRECOGNISED
    ),
    "gelu at the output": Mutant(with_layer(GELUAtOutput, 1), "1", d.AT_OUTPUT),
    "softmax diagonal": Mutant(with_layer(SoftmaxDiagonal, 1), "1", d.JACOBIAN_DIAGONAL),
    "log-softmax without Σ": Mutant(with_layer(LogSoftmaxNoSum, 1), "1", d.SOFTMAX_TERM_MISSING),
    "batchnorm mean term": Mutant(
        normed(lambda: BatchNormMeanTermDropped(HIDDEN)), "1", d.MEAN_TERM_DROPPED
    ),
    "batchnorm γ sign": Mutant(normed(lambda: BatchNormGammaSign(HIDDEN)), "1", d.SIGN),
    "layernorm mean term": Mutant(
        normed(lambda: LayerNormMeanTermDropped(HIDDEN)), "1", d.MEAN_TERM_DROPPED
    ),
    "layernorm variance term": Mutant(
        normed(lambda: LayerNormVarianceTermDropped(HIDDEN)), "1", d.VARIANCE_TERM_DROPPED
    ),
    "mse without the 2": Mutant(with_loss(MSEHalf), "loss", d.FACTOR_HALF, "values"),
    "mse without 1/N": Mutant(with_loss(MSENoMean), "loss", d.FACTOR_NC, "values"),
    "mse sign": Mutant(with_loss(MSESign), "loss", d.SIGN, "values"),
    "cross-entropy without softmax": Mutant(
        with_loss(CrossEntropyWithoutSoftmax), "loss", d.SOFTMAX_TERM_MISSING
    ),
    "cross-entropy extra 1/N": Mutant(with_loss(CrossEntropyExtraMean), "loss", d.FACTOR_INV_N),
    "cross-entropy without 1/N": Mutant(with_loss(CrossEntropyNoMean), "loss", d.FACTOR_N),
}


def _data(kind: str, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D_IN, generator=gen, dtype=torch.float64)
    if kind == "values":
        return x, torch.randn(N, C, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, C, (N,), generator=gen)


# Both references in both dtypes, and each reference alone (a user's layer without a torch twin
# has finite differences only).
SETTINGS = {
    "float64": ("both", torch.float64),
    "float32": ("both", torch.float32),
    "fd only": ("fd", torch.float64),
    "autograd only": ("autograd", torch.float64),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught_located_and_named(name: str, setting: str) -> None:
    mutant = MUTANTS[name]
    reference, dtype = SETTINGS[setting]
    torch.manual_seed(1)
    model, loss = mutant.build()
    x, target = _data(mutant.target)
    report = gradcheck(model, loss, x, target, reference=reference, dtype=dtype)
    assert not report.ok, str(report)
    assert report.first_faulty_module == mutant.where, str(report)
    assert report.faulty_layers == [report.first_faulty], str(report)
    diagnosis = report.first_diagnosis
    assert diagnosis is not None
    assert diagnosis.pattern == mutant.pattern, str(report)

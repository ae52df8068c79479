"""No false alarm: 200 random correct networks pass ``gradcheck``, half in float64, half in
float32, many of them ReLU-heavy with inputs exactly at the kink (zeros in the data, a ReLU fed
by a ReLU or a Dropout).

A network with a layer dead on the whole batch (every ReLU input negative) gives all-zero
gradients, which prove nothing: gradcheck fails such a check loudly by design (see
test_check_api). So the batch is redrawn until a gradient reaches every parameter.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from handgrad import nn
from handgrad.check import gradcheck

ACTIVATIONS = ["ReLU"] * 4 + ["LeakyReLU"] * 2 + ["Tanh", "Sigmoid", "GELU", "GELU(tanh)"]
EXTRAS = ["none"] * 6 + ["BatchNorm1d", "LayerNorm", "Dropout", "ReLU"]


def _activation(name: str) -> nn.Module:
    return {
        "ReLU": nn.ReLU,
        "LeakyReLU": lambda: nn.LeakyReLU(0.1),
        "Tanh": nn.Tanh,
        "Sigmoid": nn.Sigmoid,
        "GELU": nn.GELU,
        "GELU(tanh)": lambda: nn.GELU("tanh"),
    }[name]()


def _extra(name: str, width: int) -> list[nn.Module]:
    if name == "BatchNorm1d":
        return [nn.BatchNorm1d(width)]
    if name == "LayerNorm":
        return [nn.LayerNorm(width)]
    if name == "Dropout":
        return [nn.Dropout(0.3)]
    if name == "ReLU":
        return [nn.ReLU()]  # a ReLU fed by a ReLU: inputs exactly at the kink
    return []


def _network(rng: random.Random, d_in: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    width = d_in
    for _ in range(rng.randint(1, 3)):
        new = rng.randint(3, 10)
        layers.append(nn.Linear(width, new, bias=rng.random() < 0.85))
        width = new
        layers += _extra(rng.choice(EXTRAS), width)[:1] if rng.random() < 0.5 else []
        layers.append(_activation(rng.choice(ACTIVATIONS)))
        if rng.random() < 0.3:
            layers += _extra(rng.choice(EXTRAS), width)
    classes = rng.randint(2, 6)
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers), classes


def _loss(
    rng: random.Random, model: nn.Sequential, n: int, c: int, gen: torch.Generator
) -> tuple[nn.Loss, torch.Tensor, nn.Sequential]:
    kind = rng.choice(
        ["mse", "mse_sum", "sse", "ce", "ce_sum", "ce_smooth", "ce_prob", "nll", "mse_none"]
    )
    if kind.startswith("mse") or kind == "sse":
        loss: nn.Loss = {
            "mse": nn.MSELoss(),
            "mse_sum": nn.MSELoss("sum"),
            "sse": nn.SumSquaredLoss(),
            "mse_none": nn.MSELoss("none"),
        }[kind]
        return loss, torch.randn(n, c, generator=gen, dtype=torch.float64), model
    if kind == "ce_prob":
        probs = torch.softmax(torch.randn(n, c, generator=gen, dtype=torch.float64), 1)
        return nn.CrossEntropyLoss(), probs, model
    labels = torch.randint(0, c, (n,), generator=gen)
    if kind == "nll":
        return nn.NLLLoss(), labels, nn.Sequential(*model, nn.LogSoftmax(dim=1))
    loss = {
        "ce": nn.CrossEntropyLoss(),
        "ce_sum": nn.CrossEntropyLoss("sum"),
        "ce_smooth": nn.CrossEntropyLoss(label_smoothing=0.1),
    }[kind]
    return loss, labels, model


def _perturb(model: nn.Module, gen: torch.Generator) -> None:
    """Move normalization's γ and β away from 1 and 0 so their gradients matter."""
    for _, p in model.named_parameters():
        p.copy_(p + 0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _reaches_every_parameter(
    model: nn.Module, loss: nn.Loss, x: torch.Tensor, target: torch.Tensor, seed: int
) -> bool:
    probe = copy.deepcopy(model).double()
    probe.zero_grad()
    torch.default_generator.manual_seed(seed)
    loss(probe(x), target)
    probe.backward(loss.backward())
    return all(bool(p.grad.any()) for p in probe.parameters() if p.grad is not None)


def _batch(rng: random.Random, gen: torch.Generator, n: int, d_in: int) -> torch.Tensor:
    x = torch.randn(n, d_in, generator=gen, dtype=torch.float64) * rng.choice([0.5, 1.0, 3.0])
    if rng.random() < 0.5:
        x[torch.rand(n, d_in, generator=gen) < 0.3] = 0.0  # data with exact zeros, like MNIST
    return x


@pytest.mark.parametrize("seed", range(200))
def test_random_correct_network_passes(seed: int) -> None:
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dtype = torch.float64 if seed % 2 == 0 else torch.float32
    n, d_in = rng.randint(3, 8), rng.randint(2, 9)
    model, classes = _network(rng, d_in)
    loss, target, model = _loss(rng, model, n, classes, gen)
    _perturb(model, gen)
    if rng.random() < 0.25:
        model.eval()
        for module in model:
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.normal_(0.0, 0.5, generator=gen)
                module.running_var.uniform_(0.5, 2.0, generator=gen)
    x = _batch(rng, gen, n, d_in)
    for _ in range(20):
        if _reaches_every_parameter(model, loss, x, target, seed):
            break
        x = _batch(rng, gen, n, d_in)

    report = gradcheck(model, loss, x, target, dtype=dtype, seed=seed)

    assert report.ok, f"false alarm (seed {seed}):\n{report}"
    assert report.compared > 0

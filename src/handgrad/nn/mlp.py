"""Build a multi-layer perceptron from a spec such as ``"784-50-10"``."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from handgrad.errors import did_you_mean
from handgrad.nn.activation import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from handgrad.nn.dropout import Dropout
from handgrad.nn.linear import Linear
from handgrad.nn.module import Module, Sequential
from handgrad.nn.normalization import BatchNorm1d, LayerNorm

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "gelu_tanh", "none")
NORMS = ("none", "batchnorm", "layernorm")


def parse_sizes(spec: str | list[int] | tuple[int, ...]) -> list[int]:
    """``"784-50-10"`` → ``[784, 50, 10]``; raises ValueError for anything else."""
    if isinstance(spec, str):
        parts = spec.replace(",", "-").split("-")
        try:
            sizes = [int(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"model spec {spec!r}: expected layer widths joined by '-', like 784-50-10"
            ) from None
    else:
        sizes = [int(s) for s in spec]
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ValueError(
            f"model spec {spec!r}: expected at least two positive widths, like 784-50-10"
        )
    return sizes


def activation(name: str) -> Module | None:
    """A new activation module by name (``None`` for ``"none"``)."""
    factories: dict[str, Callable[[], Module]] = {
        "relu": ReLU,
        "leaky_relu": LeakyReLU,
        "tanh": Tanh,
        "sigmoid": Sigmoid,
        "gelu": GELU,
        "gelu_tanh": lambda: GELU("tanh"),
    }
    if name == "none":
        return None
    if name not in factories:
        raise ValueError(
            f"unknown activation {name!r}{did_you_mean(name, ACTIVATIONS)}; "
            f"choose from {', '.join(ACTIVATIONS)}"
        )
    return factories[name]()


def mlp(
    spec: str | list[int] | tuple[int, ...],
    act: str = "relu",
    *,
    out_act: str = "none",
    norm: str | None = "none",
    dropout: float = 0.0,
    input_dropout: float = 0.0,
    init: str = "torch",
    std: float | None = None,
    bias_std: float | None = None,
    draw_order: str = "out_in",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Sequential:
    """A Sequential MLP: Linear, [norm], act, [Dropout] per hidden layer, then Linear, [out_act].

    Args:
        spec: layer widths, e.g. ``"784-50-10"`` (input 784, one hidden layer of 50, output 10).
        act: hidden activation (``relu``, ``leaky_relu``, ``tanh``, ``sigmoid``, ``gelu``,
            ``gelu_tanh``).
        out_act: activation after the last layer (``tanh`` in the ninja and Fleuret seeds).
        norm: ``batchnorm`` or ``layernorm`` after each hidden Linear, or ``none`` (or None).
        dropout: dropout probability after each hidden activation (0 for none).
        input_dropout: dropout probability on the input (0 for none).
        init, std, bias_std, draw_order: passed to every ``Linear``.

    Returns:
        The model; its state-dict keys match the equivalent ``torch.nn.Sequential``.
    """
    sizes = parse_sizes(spec)
    if norm is None:  # as torch's code says "no layer"
        norm = "none"
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}{did_you_mean(norm, NORMS)}; choose from {NORMS}")
    layers: list[Module] = []
    if input_dropout > 0:
        layers.append(Dropout(input_dropout))
    for i, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(
            Linear(
                d_in,
                d_out,
                init=init,
                std=std,
                bias_std=bias_std,
                draw_order=draw_order,
                dtype=dtype,
                device=device,
            )
        )
        last = i == len(sizes) - 2
        if not last:
            if norm == "batchnorm":
                layers.append(BatchNorm1d(d_out, dtype=dtype, device=device))
            elif norm == "layernorm":
                layers.append(LayerNorm(d_out, dtype=dtype, device=device))
        name = out_act if last else act
        module = activation(name)
        if module is not None:
            layers.append(module)
        if not last and dropout > 0:
            layers.append(Dropout(dropout))
    return Sequential(*layers)

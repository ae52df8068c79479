"""Modules, layers and losses whose backward passes are written by hand.

Every module's ``backward(grad_output)`` gives each parameter its gradient in ``param.grad``
(a fresh one where it is None, added into otherwise, as autograd does) and returns dL/d(input)
when the input requires grad or when asked (``input_grad=True``), None otherwise; the formulas
live in ``handgrad.nn.functional``. ``no_saved_state()`` runs forwards that need no backward;
``accumulate_grad`` is the helper for users' own modules (see ``handgrad.nn.module``).
"""

from handgrad.nn.activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from handgrad.nn.dropout import Dropout
from handgrad.nn.linear import Flatten, Linear
from handgrad.nn.loss import CrossEntropyLoss, Loss, MSELoss, NLLLoss, SumSquaredLoss
from handgrad.nn.mlp import mlp, parse_sizes
from handgrad.nn.module import (
    Module,
    Sequential,
    accumulate_grad,
    free_saved_state,
    fresh_grad,
    no_saved_state,
    requires_grad,
)
from handgrad.nn.normalization import BatchNorm1d, LayerNorm

__all__ = [
    "GELU",
    "BatchNorm1d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "Loss",
    "MSELoss",
    "Module",
    "NLLLoss",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SumSquaredLoss",
    "Tanh",
    "accumulate_grad",
    "free_saved_state",
    "fresh_grad",
    "mlp",
    "no_saved_state",
    "parse_sizes",
    "requires_grad",
]

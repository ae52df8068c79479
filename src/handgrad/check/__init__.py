"""Gradient checking that names the faulty layer and the bug.

``gradcheck(model, loss, x, target)`` checks every hand-written gradient of a model, layer by
layer, against autograd on the torch.nn twin and against kink-aware float64 finite differences,
and returns a ``GradReport``: a row per gradient (``str(report)`` prints the table), the first
faulty layer and a diagnosis in words. ``check_accumulation`` checks that per-sample backward
passes accumulate to the batched gradient.

``check_gradients(forward, inputs, grads)`` checks a learner's own backward pass written as plain
functions (fastai's ``.g``, Fleuret's accumulated ``dl_d*``, backprop ninja's ``dlogits``...) and
names the first gradient whose own line is wrong (``handgrad.check.learner``).
"""

from handgrad.check.accumulation import AccumulationReport, check_accumulation
from handgrad.check.compare import TOLERANCES, Tolerance
from handgrad.check.diagnose import Diagnosis
from handgrad.check.finite_diff import FDCoordinate, FDResult
from handgrad.check.gradcheck import gradcheck
from handgrad.check.learner import (
    LearnerReport,
    LearnerRow,
    check_gradients,
    grads_from_accumulated,
    grads_from_dot_g,
)
from handgrad.check.report import GradReport, GradRow

__all__ = [
    "TOLERANCES",
    "AccumulationReport",
    "Diagnosis",
    "FDCoordinate",
    "FDResult",
    "GradReport",
    "GradRow",
    "LearnerReport",
    "LearnerRow",
    "Tolerance",
    "check_accumulation",
    "check_gradients",
    "gradcheck",
    "grads_from_accumulated",
    "grads_from_dot_g",
]

"""Fleuret style (EPFL deep-learning practical 3): ``backward_pass`` on one sample accumulates
into ``dl_dw1, dl_db1, dl_dw2, dl_db2``; the sums are checked against the batched loss.

    handgrad check --function examples/fleuret_style.py
"""

import torch

from handgrad.check import grads_from_accumulated

N, D, H, C = 8, 12, 6, 4


def make_inputs():
    return {
        "w1": torch.empty(H, D).normal_(0, 0.5),
        "b1": torch.empty(H).normal_(0, 0.5),
        "w2": torch.empty(C, H).normal_(0, 0.5),
        "b2": torch.empty(C).normal_(0, 0.5),
        "x": torch.randn(N, D),
        "t": torch.eye(C)[torch.randint(0, C, (N,))] * 0.9,
    }


def sigma(x):
    return torch.tanh(x)


def dsigma(x):
    return 1 - torch.tanh(x) ** 2


def loss(v, t):
    return (v - t).pow(2).sum()


def dloss(v, t):
    return 2 * (v - t)


def forward_pass(w1, b1, w2, b2, x):
    s1 = w1.mv(x) + b1
    x1 = sigma(s1)
    s2 = w2.mv(x1) + b2
    x2 = sigma(s2)
    return x, s1, x1, s2, x2


def backward_pass(w1, b1, w2, b2, t, x, s1, x1, s2, x2, dl_dw1, dl_db1, dl_dw2, dl_db2):
    x0 = x
    dl_dx2 = dloss(x2, t)
    dl_ds2 = dsigma(s2) * dl_dx2
    dl_dx1 = w2.t().mv(dl_ds2)
    dl_ds1 = dsigma(s1) * dl_dx1
    dl_dw2.add_(dl_ds2.view(-1, 1).mm(x1.view(1, -1)))
    dl_db2.add_(dl_ds2)
    dl_dw1.add_(dl_ds1.view(-1, 1).mm(x0.view(1, -1)))
    dl_db1.add_(dl_ds1)
    return {"dl_dx2": dl_dx2, "dl_ds2": dl_ds2, "dl_dx1": dl_dx1, "dl_ds1": dl_ds1}


def forward(w1, b1, w2, b2, x, t):
    """The batched truth: all samples at once (row n is sample n), loss summed over them."""
    s1 = x @ w1.t() + b1
    x1 = sigma(s1)
    s2 = x1 @ w2.t() + b2
    x2 = sigma(s2)
    return loss(x2, t), {"s1": s1, "x1": x1, "s2": s2, "x2": x2}


def backward(w1, b1, w2, b2, x, t, **intermediates):
    dl_dw1 = torch.zeros(w1.size())
    dl_db1 = torch.zeros(b1.size())
    dl_dw2 = torch.zeros(w2.size())
    dl_db2 = torch.zeros(b2.size())
    samples = []
    for n in range(x.shape[0]):
        x0, s1, x1, s2, x2 = forward_pass(w1, b1, w2, b2, x[n])
        samples.append(
            backward_pass(w1, b1, w2, b2, t[n], x0, s1, x1, s2, x2, dl_dw1, dl_db1, dl_dw2, dl_db2)
        )
    accumulated = {"dl_dw1": dl_dw1, "dl_db1": dl_db1, "dl_dw2": dl_dw2, "dl_db2": dl_db2}
    return grads_from_accumulated(accumulated, samples)

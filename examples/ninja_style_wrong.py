"""Backprop ninja style (Karpathy's makemore, exercise 1): the cross-entropy broken into atomic
steps, every intermediate's gradient written by hand (``dlogprobs, dprobs, ...``).

    handgrad check --function examples/ninja_style_wrong.py    (exit status 1)

One line is missing: counts is used twice (in counts_sum and in probs), and dcounts
holds only the gradient through probs. See what the check says.
"""

import torch
import torch.nn.functional as F

N, BLOCK, VOCAB, EMB, HIDDEN = 32, 3, 27, 10, 64


def make_inputs():
    return {
        "C": torch.randn(VOCAB, EMB),
        "W1": torch.randn(BLOCK * EMB, HIDDEN) * (5 / 3) / (BLOCK * EMB) ** 0.5,
        "b1": torch.randn(HIDDEN) * 0.1,
        "W2": torch.randn(HIDDEN, VOCAB) * 0.1,
        "b2": torch.randn(VOCAB) * 0.1,
        "Xb": torch.randint(0, VOCAB, (N, BLOCK)),
        "Yb": torch.randint(0, VOCAB, (N,)),
    }


def forward(C, W1, b1, W2, b2, Xb, Yb):
    n = Xb.shape[0]
    emb = C[Xb]
    embcat = emb.view(emb.shape[0], -1)
    hpreact = embcat @ W1 + b1
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    logit_maxes = logits.max(1, keepdim=True).values
    norm_logits = logits - logit_maxes
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdims=True)
    counts_sum_inv = counts_sum**-1
    probs = counts * counts_sum_inv
    logprobs = probs.log()
    loss = -logprobs[range(n), Yb].mean()
    return loss, {
        "emb": emb, "embcat": embcat, "hpreact": hpreact, "h": h, "logits": logits,
        "logit_maxes": logit_maxes, "norm_logits": norm_logits, "counts": counts,
        "counts_sum": counts_sum, "counts_sum_inv": counts_sum_inv, "probs": probs,
        "logprobs": logprobs,
    }  # fmt: skip


def backward(C, W1, b1, W2, b2, Xb, Yb, emb, embcat, hpreact, h, logits, logit_maxes,
             norm_logits, counts, counts_sum, counts_sum_inv, probs, logprobs):  # fmt: skip
    n = Xb.shape[0]
    dlogprobs = torch.zeros_like(logprobs)
    dlogprobs[range(n), Yb] = -1.0 / n
    dprobs = (1.0 / probs) * dlogprobs
    dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
    dcounts = counts_sum_inv * dprobs
    dcounts_sum = (-(counts_sum**-2)) * dcounts_sum_inv
    # dcounts += torch.ones_like(counts) * dcounts_sum   <- the line a learner forgets
    dnorm_logits = counts * dcounts
    dlogits = dnorm_logits.clone()
    dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)
    dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - h**2) * dh
    dW1 = embcat.T @ dhpreact
    db1 = dhpreact.sum(0)
    dembcat = dhpreact @ W1.T
    demb = dembcat.view(emb.shape)
    dC = torch.zeros_like(C)
    for k in range(Xb.shape[0]):
        for j in range(Xb.shape[1]):
            dC[Xb[k, j]] += demb[k, j]
    return {
        "logprobs": dlogprobs, "probs": dprobs, "counts_sum_inv": dcounts_sum_inv,
        "counts_sum": dcounts_sum, "counts": dcounts, "norm_logits": dnorm_logits,
        "logit_maxes": dlogit_maxes, "logits": dlogits, "h": dh, "W2": dW2, "b2": db2,
        "hpreact": dhpreact, "W1": dW1, "b1": db1, "embcat": dembcat, "emb": demb, "C": dC,
    }  # fmt: skip

"""Search MLP recipes for issue 7's targets: subset-best, mnist-fast, mnist-best.

Every hyper-parameter is chosen on a validation split carved from the training data; the test
set is read only with ``--final``, which retrains on the whole training set with the given
settings and evaluates the test set once. One run prints one JSON line (and appends it to
``--log`` if given).

    # a validation run on the 1,000-image subset (900 train / 100 valid)
    .venv/bin/python bench/accuracy_search.py --data subset --model 784-800-10 --epochs 200 \\
        --augment elastic --dropout 0.3 --label-smoothing 0.1
    # the final figure: retrain on all 1,000 and evaluate the 1,000 test images once
    .venv/bin/python bench/accuracy_search.py --data subset ... --final --seed 1

The hot step is the ordinary handgrad step: ``model(x)``, ``loss(out, y)``,
``model.backward(loss.backward())``, ``opt.step()``; augmentation runs on each batch before it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from typing import Any

import torch

from handgrad import nn
from handgrad.data import Batches, load_preset
from handgrad.data.augment import AUGMENTS, Augment
from handgrad.optim import make_optimizer, make_schedule


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=("subset", "mnist"), default="subset")
    p.add_argument("--valid", type=int, default=None, help="validation records (100 / 10000)")
    p.add_argument("--folds", type=int, default=1, help="subset: average over K disjoint folds")
    p.add_argument("--final", action="store_true", help="train on all train data, test once")
    p.add_argument("--model", default="784-800-10")
    p.add_argument("--act", default="relu")
    p.add_argument("--norm", default="none")
    p.add_argument("--init", default="kaiming_uniform")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--input-dropout", type=float, default=0.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--momentum", type=float, default=None)
    p.add_argument("--schedule", choices=("cosine", "onecycle", "constant"), default="onecycle")
    p.add_argument("--warmup", type=float, default=0.1, help="cosine: warmup fraction")
    p.add_argument("--pct-start", type=float, default=0.25, help="onecycle: rising fraction")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--augment", default="none", help=f"{', '.join(AUGMENTS)}")
    p.add_argument("--shift", type=float, default=None)
    p.add_argument("--rotate", type=float, default=None)
    p.add_argument("--scale", type=float, default=None)
    p.add_argument("--alpha", type=float, default=None, help="elastic alpha")
    p.add_argument("--sigma", type=float, default=None, help="elastic sigma")
    p.add_argument("--aug-p", type=float, default=None)
    p.add_argument("--clean-epochs", type=int, default=0, help="last epochs without augment")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=0, help="epochs between evals (0: end)")
    p.add_argument("--log", default=None, help="append the JSON line to this file")
    p.add_argument("--tag", default="")
    return p.parse_args(argv)


def augmentation(args: argparse.Namespace) -> Augment:
    base = AUGMENTS[args.augment]
    changes = {
        "shift": args.shift,
        "rotate": args.rotate,
        "scale": args.scale,
        "elastic_alpha": args.alpha,
        "elastic_sigma": args.sigma,
        "p": args.aug_p,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes and args.augment == "none":
        base = Augment()
    return replace(base, **changes)


def accuracy(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``x`` ``(N, 784)`` whose argmax logit is the label, in eval mode."""
    model.eval()
    correct = 0
    for start in range(0, len(x), 2000):
        out = model(x[start : start + 2000])  # (B, C)
        correct += int((out.argmax(1) == labels[start : start + 2000]).sum())
    model.train()
    return correct / len(x)


def folds(n: int, n_valid: int, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``k`` disjoint validation folds of ``n_valid`` records out of ``n`` training records:
    ``[(train_idx, valid_idx), ...]`` from one fixed permutation (fold 0 of k=1 is one split)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))  # (n,)
    out = []
    for i in range(k):
        valid = order[i * n_valid : (i + 1) * n_valid].sort().values  # (n_valid,)
        train = torch.cat([order[: i * n_valid], order[(i + 1) * n_valid :]]).sort().values
        out.append((train, valid))
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    if args.data == "subset":
        ds = load_preset("fleuret")  # 1,000/1,000, normalized by the train part's mean/std
        n_valid = args.valid or 100
    else:
        ds = load_preset("mnist")  # 60,000/10,000, pixels / 255
        n_valid = args.valid or 10_000
    x, labels = ds.x_train, ds.labels_train
    t_data = time.perf_counter() - t_start
    if args.final:
        parts = [(x, labels, ds.x_test, ds.labels_test)]
    else:
        parts = [
            (x[tr], labels[tr], x[va], labels[va]) for tr, va in folds(len(x), n_valid, args.folds)
        ]
    results = [run(args, *part) for part in parts]
    acc = sum(r["acc"] for r in results) / len(results)
    record: dict[str, object] = {
        "tag": args.tag,
        "eval": "test" if args.final else f"valid x{len(parts)}",
        "acc": round(acc, 4),
        "per_fold": [round(r["acc"], 4) for r in results] if len(results) > 1 else None,
        "params": results[0]["params"],
        "epochs": args.epochs,
        "s_per_epoch": round(sum(r["s_per_epoch"] for r in results) / len(results), 3),
        "aug_s": round(results[0]["aug_s"], 1),
        "data_s": round(t_data, 2),
        "total_s": round(time.perf_counter() - t_start, 1),
        "threads": args.threads,
        "history": results[0]["history"],
        "argv": " ".join(argv if argv is not None else sys.argv[1:]),
        "augment": asdict(augmentation(args)),
    }
    line = json.dumps(record)
    print(line, flush=True)
    if args.log:
        with open(args.log, "a") as f:
            f.write(line + "\n")
    return record


def run(
    args: argparse.Namespace,
    x_tr: torch.Tensor,
    y_tr: torch.Tensor,
    x_ev: torch.Tensor,
    y_ev: torch.Tensor,
) -> dict[str, Any]:
    """Train one model on ``x_tr`` ``(N, 784)``, ``y_tr`` ``(N,)``; evaluate on ``x_ev``."""
    torch.manual_seed(args.seed)
    model = nn.mlp(
        args.model,
        args.act,
        norm=args.norm,
        dropout=args.dropout,
        input_dropout=args.input_dropout,
        init=args.init,
    )
    model.flatten_parameters()
    model.input_grad = False
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    options: dict[str, object] = {"lr": args.lr, "weight_decay": args.weight_decay}
    if args.momentum is not None:
        options["momentum"] = args.momentum
    opt = make_optimizer(args.optimizer, model.parameters(), **options)
    batches = Batches(x_tr, y_tr, args.batch_size, seed=args.seed, drop_last=True)
    total = len(batches) * args.epochs
    if args.schedule == "onecycle":
        schedule = make_schedule(
            "onecycle", max_lr=args.lr, total_steps=total, pct_start=args.pct_start
        )
    elif args.schedule == "cosine":
        schedule = make_schedule(
            "cosine", lr=args.lr, total_steps=total, warmup_steps=int(args.warmup * total)
        )
    else:
        schedule = make_schedule("constant", lr=args.lr)
    aug = augmentation(args)
    generator = torch.Generator().manual_seed(10_000 + args.seed)
    params = list(model.parameters())
    ema = [p.clone() for p in params] if args.ema > 0 else None

    history = []
    step = 0
    t_train = time.perf_counter()
    t_aug = 0.0
    for epoch in range(args.epochs):
        use_aug = not aug.is_identity and epoch < args.epochs - args.clean_epochs
        for xb, yb in batches.epoch(epoch):
            if use_aug:
                t0 = time.perf_counter()
                xb = aug(xb, generator)
                t_aug += time.perf_counter() - t0
            schedule.apply(opt, step)
            opt.zero_grad()
            out = model(xb)
            loss_fn(out, yb)
            model.backward(loss_fn.backward())
            opt.step()
            if ema is not None:
                for e, p in zip(ema, params, strict=True):
                    e.lerp_(p, 1 - args.ema)
            step += 1
        if args.eval_every and (epoch + 1) % args.eval_every == 0 and epoch + 1 < args.epochs:
            history.append((epoch + 1, round(accuracy(model, x_ev, y_ev), 4)))
    train_time = time.perf_counter() - t_train
    if ema is not None:
        for e, p in zip(ema, params, strict=True):
            p.copy_(e)
    return {
        "acc": accuracy(model, x_ev, y_ev),
        "params": model.num_parameters(),
        "s_per_epoch": train_time / args.epochs,
        "aug_s": t_aug,
        "history": history,
    }


if __name__ == "__main__":
    main()

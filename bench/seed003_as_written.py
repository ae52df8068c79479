"""Seed 003 (Fleuret's practical 3) as its notebook was written, with per-layer statistics.

The notebook scaled the *inputs* by 0.9 (``train_input * zeta``) and kept the targets at 0/1;
``handgrad train`` has no ``--input-scale`` yet, so this script builds the recipe's parts
(``fleuret-practical3`` with ``--target-scale 1``), multiplies the inputs by 0.9 and takes the
recipe's full-pass steps itself, as ``handgrad.train.loop`` does (one SGD step per pass with
eta = 0.1 / N over the summed squared loss; the pass is one full batch here, the same sum as
the recipe's 1,000 one-sample micro-batches up to float rounding). It writes a run directory
(``config.json``, ``metrics.jsonl``, ``layers.jsonl``, ``model.safetensors``) that ``handgrad
doctor`` and ``handgrad report`` read, and prints the notebook's log lines.

This is also what the loop has to do for the statistics: at the steps of
``layer_stats.stats_steps``, take the step through ``layer_stats.probe_step`` and append the
records to ``layers.jsonl``.

Usage:
    .venv/bin/python bench/seed003_as_written.py --passes 200 --out /tmp/seed003
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from handgrad import nn
from handgrad.train import build
from handgrad.train import layer_stats as ls
from handgrad.train import records as rec
from handgrad.train.metrics import error_rate
from handgrad.train.recipes import get_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs"))
    parser.add_argument("--zeta", type=float, default=0.9, help="the notebook's input scale")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = get_recipe("fleuret-practical3").config.replace(
        target_scale=1.0,
        batch_size=None,
        accumulate=1,
        epochs=args.passes,
        name="seed003-as-written",
    )
    data = build.load_data(config)
    x, y = data.x_train * args.zeta, data.y_train
    x_test = data.x_test * args.zeta
    model, loss, opt = build.build_training_parts(config, data.n_train)
    probe = ls.SequentialProbe(model)
    run = rec.new_run_dir(args.out, config.name)
    rec.atomic_write(run / rec.CONFIG, config.to_json().encode())
    wanted = set(ls.stats_steps(args.passes, 1_000_000, first=10)) | set(
        range(0, args.passes + 1, 5)
    )
    started = time.perf_counter()
    with torch.no_grad():
        for step in range(args.passes + 1):
            model.eval()
            with nn.no_saved_state():  # evaluation forwards need no backward
                out = model(x)
                value = float(loss(out, y))
                test_out = model(x_test)
                test_loss = float(loss(test_out, data.y_test))
            record = {
                "step": step,
                "epoch": float(step),
                "lr": opt.lr,
                "batch_loss": value if step else None,
                "train_loss": value,
                "train_error": error_rate(out, data.labels_train),
                "valid_loss": None,
                "valid_error": None,
                "test_loss": test_loss,
                "test_error": error_rate(test_out, data.labels_test),
                "seconds": round(time.perf_counter() - started, 3),
            }
            model.train()
            rec.append_metrics(run, record)
            print(
                f"{step} acc_train_loss {value:.02f} acc_train_error "
                f"{100 * record['train_error']:.02f}% test_error {100 * record['test_error']:.02f}%"
            )
            if step == args.passes:
                break
            if step + 1 in wanted:
                _, records = ls.probe_step(probe, loss, opt, [(x, y)], step + 1)
                ls.append_layers(run, records)
            else:
                loss(model(x), y)
                model.backward(loss.backward())
                opt.step()
                opt.zero_grad()
    rec.save_model(run / rec.MODEL, model.state_dict(), {"model": config.model})
    print(f"wrote {run}")


if __name__ == "__main__":
    main()

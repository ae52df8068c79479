"""Real short runs for the doctor and report tests, and their ``layers.jsonl`` by replay.

``cli_run`` trains through the real command line (``handgrad train``) into a temporary folder.
The loop does not record per-layer statistics yet, so ``replay_layers`` rebuilds the run from
its ``config.json`` (the same model, optimizer and batches, as ``handgrad.train.loop`` builds
them), takes the same steps, measuring the chosen ones through ``SequentialProbe``, and writes
``layers.jsonl``. It checks that it arrived at the very weights the run saved, so the figures
are those of the run itself.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import torch

from handgrad.cli.main import main as cli_main
from handgrad.train import build
from handgrad.train import layer_stats as ls
from handgrad.train import records as rec
from handgrad.train.config import TrainConfig
from handgrad.train.steps import build_plan


def cli_run(out: Path, *args: str) -> Path:
    """``handgrad train ARGS --out OUT --quiet --no-plots``; the new run directory."""
    before = set(out.glob("*")) if out.exists() else set()
    code = cli_main(["train", *args, "--out", str(out), "--quiet", "--no-plots"])
    assert code in (0, 1), f"handgrad train {' '.join(args)} exited {code}"
    (run,) = set(out.glob("*")) - before
    return run


def replay_layers(run: Path, *, first: int = 10, check: bool = True) -> None:
    """Write ``run/layers.jsonl`` by replaying the run's steps (constant learning rate only;
    no augmentation), measuring ``layer_stats.stats_steps``."""
    config = TrainConfig.load(run / rec.CONFIG)
    assert config.schedule == "constant" and config.augment == "none"
    data = build.load_data(config)
    plan = build_plan(config, data.n_train)
    model, loss, opt = build.build_training_parts(config, data.n_train)
    batches = build.build_batches(config, data)
    probe = ls.SequentialProbe(model)
    records = rec.read_metrics(run)
    last = records[-1]["step"] if records else plan.total_steps
    wanted = set(ls.stats_steps(plan.total_steps, plan.eval_every, first))
    torch.set_num_threads(config.threads or 1)
    out: list[dict] = []
    with torch.no_grad():
        step = 0
        it = None
        while step < last:
            epoch, position = divmod(step, plan.steps_per_epoch)
            if it is None or position == 0:
                it = batches.epoch(epoch)
            micro = list(islice(it, plan.micro_per_step))
            if step + 1 in wanted:
                _, measured = ls.probe_step(probe, loss, opt, micro, step + 1)
                out.extend(measured)
            else:
                for xb, yb in micro:
                    loss(model(xb), yb)
                    model.backward(loss.backward())
                opt.step()
                opt.zero_grad()
            step += 1
    ls.append_layers(run, out)
    if check and (run / rec.MODEL).exists():
        saved, _ = rec.load_model_state(run)
        for key, value in model.state_dict().items():
            assert torch.equal(value, saved[key]), f"replay differs from the run at {key}"

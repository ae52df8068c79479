"""``handgrad predict RUN``: classify image files or test-set images with a run's model."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from handgrad.data.images import read_digit_image
from handgrad.errors import HandgradError
from handgrad.train import records as rec
from handgrad.train.build import check_run_weights, load_data, model_from_state, pixels_to_input
from handgrad.train.config import TrainConfig
from handgrad.train.metrics import predicted_classes, probabilities


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify image files or test-set images with a run's model",
        description=(
            "Print the predicted class and the class probabilities (softmax of the outputs) "
            "for each image. Image files are read as grayscale, resized to 28x28 if needed and "
            "normalized as the run's data preset does; MNIST digits are light on dark, so "
            "images with a light background are inverted (see --invert)."
        ),
    )
    p.add_argument("run", metavar="RUN", help="a run directory (or a name under --out)")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="PNG/JPEG files")
    p.add_argument("--index", type=int, nargs="+", metavar="I", default=[], help="test-set indices")
    p.add_argument(
        "--rows",
        metavar="FILE",
        help="a table run: predict each row of a .csv (header naming the features), .npy or .npz",
    )
    p.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="invert image files (auto: when the border is light)",
    )
    p.add_argument("--out", default="runs", metavar="DIR", help="where runs are (default ./runs)")
    p.add_argument("--data", dest="data_dir", metavar="DIR", help="folder with the MNIST files")
    p.add_argument(
        "--weights",
        choices=("last", "best"),
        default="last",
        help="last: the final model (default); best: best.safetensors (--keep-best)",
    )
    p.set_defaults(func=run)


def read_image(path: Path, invert: str) -> np.ndarray:
    """A 28x28 uint8 array, light digit on dark, from an image file (pixel count capped)."""
    return read_digit_image(path, invert)


def describe(name: str, outputs: Tensor, label: int | None) -> str:
    """One line per image: the prediction and the probabilities (or the regression output)."""
    predicted = int(predicted_classes(outputs)[0])
    truth = "" if label is None else f"  (true {label}{'' if label == predicted else ', wrong'})"
    probs = probabilities(outputs)
    if probs is None:
        return f"{name}: predicted {predicted}, output {outputs[0, 0].item():.3f}{truth}"
    table = "  ".join(f"{c}:{p:.3f}" for c, p in enumerate(probs[0].tolist()))
    return (
        f"{name}: predicted {predicted} (probability {probs[0, predicted].item():.3f}){truth}\n"
        f"  {table}"
    )


def run(args: argparse.Namespace) -> int:
    rows = getattr(args, "rows", None)
    if not args.images and not args.index and rows is None:
        raise HandgradError(
            "predict: give image files, --index I [I ...] into the test set, or --rows FILE"
        )
    run_dir = rec.find_run(args.run, args.out)
    config = TrainConfig.load(run_dir / rec.CONFIG).validate()
    if args.data_dir is not None:
        config = config.replace(data_dir=args.data_dir)
    load = rec.load_best_state if args.weights == "best" else rec.load_model_state
    state, source = load(run_dir)
    check_run_weights(run_dir, config, state, source)  # the weights fit the config
    model = model_from_state(config, state).eval()
    if rows is not None:  # the user's own table (handgrad.cli.predict_table)
        from handgrad.cli.predict_table import predict_rows

        if args.images or args.index:
            raise HandgradError("predict: --rows takes no image files and no --index")
        print("\n".join(predict_rows(config, model, rows)))
        return 0
    if (args.images or args.index) and config.data_file is not None:
        raise HandgradError(
            f"predict: run {run_dir} trained on the table {config.data_file}; give --rows FILE"
        )
    items: list[tuple[str, Tensor, int | None]] = []
    if args.index:
        data = load_data(config)
        n = len(data.x_test)
        for i in args.index:
            if not 0 <= i < n:
                raise HandgradError(
                    f"--index {i}: out of range; the test set has {n:,} images (0-{n - 1})"
                )
            items.append((f"test[{i}]", data.x_test[i : i + 1], int(data.labels_test[i])))
    if args.images:
        pixels = np.stack([read_image(Path(p), args.invert) for p in args.images])
        inputs = pixels_to_input(config, pixels)  # (N, 784)
        items.extend((p, inputs[k : k + 1], None) for k, p in enumerate(args.images))
    with torch.no_grad():
        for name, x, label in items:
            print(describe(name, model(x), label))
    return 0

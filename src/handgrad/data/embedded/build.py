"""Build the embedded subset: the first 1,000 train and 1,000 test images and labels of MNIST.

Run once from the repository root, against a verified copy of the four official files:

    .venv/bin/python src/handgrad/data/embedded/build.py --data ../shared/data/mnist

It writes four gzip'd IDX files (gzip -9, mtime 0, so the output is byte-for-byte reproducible)
next to this script and prints the MD5s of their uncompressed content, which belong in
``handgrad.data.checksums.EMBEDDED_MD5``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from handgrad.data.checksums import md5_hex
from handgrad.data.idx import idx_bytes, write_idx
from handgrad.data.sources import EMBEDDED_FILES, load_mnist_arrays

N_SUBSET = 1000  # as in Fleuret's dlc_practical_prologue: narrow(0, 0, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with the four official files")
    args = parser.parse_args()
    arrays = load_mnist_arrays(args.data, download=False)  # verified against published MD5s
    here = Path(__file__).parent
    for key, name in EMBEDDED_FILES.items():
        subset = arrays[key][:N_SUBSET]
        path = write_idx(here / name, subset)
        print(f'    "{key}": "{md5_hex(idx_bytes(subset))}",  # {path.stat().st_size} bytes')


if __name__ == "__main__":
    main()

"""handgrad: neural networks whose every backward pass is written by hand, and proved right.

Subpackages:
    handgrad.nn         modules, layers and losses with hand-written backward passes
    handgrad.reference  the torch.nn twin of a model, where autograd runs (docs/architecture.md
                        names the few modules that may use it)
    handgrad.check      gradient checking that names the faulty layer and the bug
    handgrad.data       MNIST: readers, checksums, the embedded subset, presets, batches
    handgrad.optim      optimizers and learning-rate schedules, written out by hand
    handgrad.train      configs, the step plan, both engines, the training loop, run records,
                        sessions, plots and recipes
"""

from handgrad.errors import HandgradError

__version__ = "0.1.0"
__all__ = ["HandgradError", "__version__"]

"""The words of ``handgrad check --help``: what it checks, examples, and the contract of a
``--function`` file (the contract ``check/learner_file.py`` implements; change both together)."""

# The help of each option but --function and --module (below).
OPTIONS = {
    "--model": "an MLP from its layer widths, e.g. 784-50-10",
    "--act": "hidden activation of --model (default relu)",
    "--out-act": "activation after the last layer of --model (default none)",
    "--norm": "normalization after each hidden Linear of --model (default none)",
    "--dropout": "dropout after each hidden activation of --model (default 0)",
    "--loss": "loss on the output: mse (default for --model), sse, cross_entropy, "
    "nll, or none: a random upstream gradient (default for --module)",
    "--input-shape": "shape of the random input for --module, e.g. 7,5 (default: 4 rows of "
    "the module's in_features, if it has them)",
    "--args": "constructor arguments for --module: a JSON list (positional) or "
    "object (keywords), e.g. '[5, 3]'",
    "--batch": "rows in the random input batch of --model (default 4)",
    "--dtype": "dtype to check in; tolerances follow it (default float64)",
    "--reference": "autograd, fd (finite differences) or both (default)",
    "--fd-samples": "coordinates per gradient checked by finite differences (default 24)",
    "--seed": "seed of the model, the input, the targets and the sampling (default 0)",
    "--eval": "check in eval mode (Dropout off, BatchNorm on running statistics)",
    "--json": "print exactly one JSON object instead of the table",
}

FUNCTION_HELP = (
    "your backward pass in a plain Python FILE that defines make_inputs() -> dict name -> "
    "tensor, forward(**inputs) -> loss or (loss, intermediates), and backward(**inputs, "
    "**intermediates) -> dict name -> dL/d(name). The file is imported, so its top-level code "
    "RUNS (in a child process; check only files you trust)"
)

CONTRACT = """\
--function FILE: the file defines three functions (see examples/ for one per style)
  make_inputs()          -> dict name -> tensor: everything the loss depends on (parameters,
                            data, integer targets); torch is seeded with --seed first
  forward(**inputs)      -> the scalar loss, or (loss, intermediates): intermediates a dict
                            name -> tensor computed on the way ("logits", "h", ...)
  backward(**inputs, **intermediates)
                         -> dict name -> your dL/d(name), for any inputs and intermediates
                            (handgrad.check.grads_from_dot_g / grads_from_accumulated build it
                            from fastai's .g or Fleuret's accumulated dl_d* tensors)
  Importing the file runs it (in a child process; a block under if __name__ == "__main__":
  does not run). Each gradient is judged against autograd on forward (float64) at your
  dtype's tolerance, then locally, from your own upstream gradients: the first wrong one is
  the line where the mistake is. Whatever the file prints goes to stderr."""

MODULE_HELP = (
    "your handgrad.nn.Module subclass CLASS from the Python file FILE. The file is "
    "imported (its top-level code runs: importing your code is the point, so check only "
    "files you trust); CLASS is constructed with no arguments, or with --args"
)

DESCRIPTION = """\
Check every hand-written gradient against autograd (the torch.nn twin) and kink-aware float64
finite differences. Each layer is checked in isolation, fed the reference's upstream gradient,
so the first faulty layer is named and its bug diagnosed (a factor 2 or 1/N, a sign, a
transpose, a bias not summed over the batch, a gradient not accumulated, ...).

Either build an MLP from a spec (--model 784-50-10), or check your own handgrad.nn.Module
subclass from your own file (--module my_layer.py:MyLinear --input-shape 7,5). A module that
defines its own forward has no torch.nn twin and is checked by finite differences alone.

Or check your own backward pass written as plain functions or notebook code (fastai's .g,
Fleuret's accumulated dl_d*, backprop ninja's dlogits...) from a file: --function FILE (below).

Exit status: 0 all gradients right, 1 a gradient is wrong, 2 bad usage or unloadable file."""

EPILOG = (
    """\
examples:
  handgrad check --model 784-50-10 --act tanh --loss mse
  handgrad check --model 20-16-16-5 --norm batchnorm --loss cross_entropy --dtype float32
  handgrad check --module my_layer.py:MyLinear --input-shape 7,5 --json
  handgrad check --function examples/ninja_style.py

"""
    + CONTRACT
)

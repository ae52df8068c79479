"""handgrad where its users learn: Jupyter.

- :mod:`handgrad.notebook.exercise`: ``check_exercise(name, run)``, the check cell of an
  exercise: "not implemented yet", a one-line error, or the checker's report (HTML in Jupyter).
- :mod:`handgrad.notebook.make`: the exercise copies made from the solved notebooks
  (``python -m handgrad.notebook make-exercises``).
- :mod:`handgrad.notebook.api`: what the command line does, as calls that return objects
  (``train_recipe``, ``evaluate``, ``check_model``), with a ``tqdm.auto`` progress bar.
"""

from handgrad.notebook.exercise import ExerciseResult, check_exercise

__all__ = ["ExerciseResult", "check_exercise"]

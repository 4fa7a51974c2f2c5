"""The ``classify`` workflows and the run directory they write.

- :mod:`~classifiers.runs.record`: the run record (``metrics.json``), read and written in
  one place, feeding the report, the command line and ``compare``;
- :mod:`~classifiers.runs.directory`: file names and staging a directory into place;
- :mod:`~classifiers.runs.task`: the steps the workflows share;
- the workflows: :mod:`~classifiers.runs.fit` (fit, sweep), :mod:`~classifiers.runs.cv`,
  :mod:`~classifiers.runs.apply` (evaluate, predict), :mod:`~classifiers.runs.compare`.
"""

from classifiers.runs.apply import default_evaluation_dir, evaluate_run, predict_run
from classifiers.runs.compare import compare_runs
from classifiers.runs.cv import cross_validate
from classifiers.runs.fit import fit_run, sweep_run
from classifiers.runs.record import (RUN_ENCODING, RUN_ENCODING_VERSION, RunRecord,
                                     RunVersionError, read_run)

__all__ = [
    "RUN_ENCODING",
    "RUN_ENCODING_VERSION",
    "RunRecord",
    "RunVersionError",
    "compare_runs",
    "cross_validate",
    "default_evaluation_dir",
    "evaluate_run",
    "fit_run",
    "predict_run",
    "read_run",
    "sweep_run",
]

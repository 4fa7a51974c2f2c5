"""The ``classify`` workflows and the run directory they write.

- :mod:`~classifiers.runs.record`: the run record (``metrics.json``), a frozen dataclass of
  typed sections read and written in one place, feeding the report, the command line and
  ``compare``;
- :mod:`~classifiers.runs.directory`: file names and staging a directory into place;
- :mod:`~classifiers.runs.task`: the :class:`~classifiers.runs.task.Task` fit, sweep and cv
  settle once (table, split, chosen layers and poolings, variant task) before the first fit;
- :mod:`~classifiers.runs.steps`: the steps the workflows share;
- the workflows: :mod:`~classifiers.runs.fit` (fit, sweep), :mod:`~classifiers.runs.cv`,
  :mod:`~classifiers.runs.apply` (evaluate, predict), :mod:`~classifiers.runs.compare`.
"""

from classifiers.runs.apply import (default_evaluation_dir, default_predictions_path,
                                    evaluate_run, predict_run)
from classifiers.runs.compare import (COMPARE_FILE, COMPARE_HEADER, compare_cells, compare_runs,
                                      default_compare_dir)
from classifiers.runs.cv import cross_validate
from classifiers.runs.directory import METRICS_FILE, REPORT_FILE, SWEEP_FILE
from classifiers.runs.fit import fit_run, sweep_run
from classifiers.runs.record import (RUN_ENCODING, RUN_ENCODING_VERSION, RunRecord,
                                     RunVersionError, read_run)

__all__ = [
    "COMPARE_FILE",
    "COMPARE_HEADER",
    "METRICS_FILE",
    "REPORT_FILE",
    "SWEEP_FILE",
    "RUN_ENCODING",
    "RUN_ENCODING_VERSION",
    "RunRecord",
    "RunVersionError",
    "compare_cells",
    "compare_runs",
    "cross_validate",
    "default_compare_dir",
    "default_evaluation_dir",
    "default_predictions_path",
    "evaluate_run",
    "fit_run",
    "predict_run",
    "read_run",
    "sweep_run",
]

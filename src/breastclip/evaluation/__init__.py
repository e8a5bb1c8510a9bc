"""Clinical evaluation of a predictions table: metrics with patient-level bootstrap CIs, paired method comparisons,
operating points frozen on validation, calibration, subgroups and confident errors.

Plain numpy / pandas / scipy / scikit-learn: nothing here imports torch. Entry points: :func:`evaluate_predictions`
(one method, returns :class:`Evaluation`) and :func:`compare_methods` (paired comparisons for a leaderboard).
"""

from breastclip.evaluation.compare import compare_methods, delong_auc_ci, delong_test, paired_bootstrap
from breastclip.evaluation.summary import Evaluation, evaluate_predictions

__all__ = ["Evaluation", "compare_methods", "delong_auc_ci", "delong_test", "evaluate_predictions", "paired_bootstrap"]

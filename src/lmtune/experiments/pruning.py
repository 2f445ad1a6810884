"""Which trials a search stops early: Optuna's pruners, and the median rule with a noise margin.

A dev set of a few hundred rows scores two equally good models a few examples apart, and early
evaluations are closest together: the plain median rule then stops a trial that trails by one
or two examples (on SST-2, the trial that went on to be the study's best). The margin keeps a
trial unless it trails the median by more than the evaluation's own noise: one standard error
of a 0-1 metric where higher is better (accuracy, F1) over the evaluation's examples,
sqrt(m(1 - m) / n); a loss gets none.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

EVAL_EXAMPLES = "eval_examples"  # trial user attribute: the size of the evaluation set


def noise_margin(median: float, examples: int | None) -> float:
    """One standard error of a proportion `median` measured on `examples` examples; 0 when the
    metric is not a proportion (a loss, a 0-100 score) or the size is unknown."""
    if not examples or not 0.0 <= median <= 1.0:
        return 0.0
    return math.sqrt(median * (1.0 - median) / examples)


def make_median_pruner(startup_trials: int, margin: float | None) -> Any:
    """The median rule: stop a trial whose best evaluation so far trails the median of the
    finished trials' evaluations at the same step by more than `margin` (None: the noise
    margin of each evaluation; 0: Optuna's plain MedianPruner)."""
    import optuna

    if margin == 0:
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)

    class MarginMedianPruner(optuna.pruners.BasePruner):
        def prune(self, study: Any, trial: Any) -> bool:
            step = trial.last_step
            if step is None:
                return False
            finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if len(finished) < startup_trials:
                return False
            others = [t.intermediate_values[step] for t in finished if step in t.intermediate_values]
            mine = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
            if not others:
                return False
            if not mine:
                return True  # only NaN so far
            median = statistics.median(others)
            if study.direction == optuna.study.StudyDirection.MAXIMIZE:
                gap = noise_margin(median, trial.user_attrs.get(EVAL_EXAMPLES)) if margin is None else margin
                return max(mine) < median - gap
            return min(mine) > median + (margin or 0.0)  # a loss is no proportion: no noise margin

    return MarginMedianPruner()


def make_pruner(name: str, startup_trials: int, margin: float | None) -> Any:
    """The study's pruner by its config name (median | hyperband | none)."""
    import optuna

    if name == "median":
        return make_median_pruner(startup_trials, margin)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
    return optuna.pruners.NopPruner()

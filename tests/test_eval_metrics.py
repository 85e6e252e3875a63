"""Metrics: the Brodersen interval against Monte-Carlo and closed forms; the rest against sklearn."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_auc_score

from stainfree.evaluation.metrics import balanced_accuracy_ci, compute_metrics, flat_metrics


def _monte_carlo(cm: np.ndarray, n: int = 400_000, seed: int = 0) -> np.ndarray:
    """Samples of the mean of the per-class Beta(TP+1, FN+1) recalls."""
    rng = np.random.default_rng(seed)
    tp, support = np.diag(cm), cm.sum(axis=1)
    return np.mean([rng.beta(tp[i] + 1, support[i] - tp[i] + 1, n) for i in range(len(tp))], axis=0)


@pytest.mark.parametrize(
    "cm",
    [
        [[879, 100], [120, 773]],  # paper-sized, balanced
        [[409, 40], [300, 3971]],  # paper-sized, imbalanced
        [[5, 2], [1, 3]],  # tiny: skewed, wide posterior
        [[30, 3, 2], [4, 20, 1], [0, 2, 10]],  # three classes
    ],
)
def test_ci_matches_monte_carlo(cm):
    cm = np.array(cm)
    ci = balanced_accuracy_ci(cm)
    samples = _monte_carlo(cm)
    lo, med, hi = np.quantile(samples, [0.025, 0.5, 0.975])
    assert ci["lower"] == pytest.approx(lo, abs=0.005)
    assert ci["median"] == pytest.approx(med, abs=0.005)
    assert ci["upper"] == pytest.approx(hi, abs=0.005)
    assert ci["mean"] == pytest.approx(samples.mean(), abs=0.002)
    assert ci["point"] == pytest.approx(np.mean(np.diag(cm) / cm.sum(axis=1)))
    assert ci["lower"] < ci["mode"] < ci["upper"]


def test_ci_single_class_is_beta_quantiles():
    """With one class the posterior is one Beta: quantiles are known in closed form."""
    ci = balanced_accuracy_ci([[17, 4], [0, 0]], level=0.9)
    assert ci["n_classes"] == 1  # the class without true samples is left out
    assert ci["lower"] == pytest.approx(stats.beta.ppf(0.05, 18, 5), abs=1e-4)
    assert ci["upper"] == pytest.approx(stats.beta.ppf(0.95, 18, 5), abs=1e-4)
    assert ci["mode"] == pytest.approx(17 / 21, abs=1e-3)


def test_ci_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        balanced_accuracy_ci([[1, 2, 3]])
    with pytest.raises(ValueError, match="negative"):
        balanced_accuracy_ci([[1, -2], [0, 3]])
    with pytest.raises(ValueError, match="empty"):
        balanced_accuracy_ci([[0, 0], [0, 0]])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_metrics_match_sklearn(n_classes):
    rng = np.random.default_rng(n_classes)
    n = 500
    target = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[target]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = ["live", "dead", "other"][:n_classes]
    m = compute_metrics(probs, target, names)
    pred = probs.argmax(axis=1)
    assert m["bal_acc"] == pytest.approx(balanced_accuracy_score(target, pred))
    assert m["acc"] == pytest.approx(accuracy_score(target, pred))
    assert m["confusion_matrix"] == confusion_matrix(target, pred, labels=list(range(n_classes))).tolist()
    if n_classes == 2:
        assert m["auroc"] == pytest.approx(roc_auc_score(target, probs[:, 1]))
    else:
        assert m["auroc"] == pytest.approx(roc_auc_score(target, probs, multi_class="ovr", average="macro"))
    cm = np.array(m["confusion_matrix"])
    for i, name in enumerate(names):
        assert m["recall"][name] == pytest.approx(cm[i, i] / cm[i].sum())
    assert m["bal_acc_ci"]["lower"] < m["bal_acc"] < m["bal_acc_ci"]["upper"]
    assert set(flat_metrics(m)) >= {"bal_acc", "bal_acc_lower", "bal_acc_upper", "auroc", "acc"}


def test_confusion_keeps_fixed_class_order_when_a_class_is_never_predicted():
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0]])
    m = compute_metrics(probs, np.array([0, 2, 1]), ["a", "b", "c"])
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert m["recall"] == {"a": 1.0, "b": 1.0, "c": 0.0}


def test_pearson_with_pi_mean():
    rng = np.random.default_rng(1)
    pi = rng.uniform(100, 700, 200)
    p_live = np.clip(1 - (pi - 100) / 600 + rng.normal(0, 0.1, 200), 0, 1)
    probs = np.stack([p_live, 1 - p_live], axis=1)
    target = (pi > 400).astype(int)
    pi_with_gap = pi.copy()
    pi_with_gap[:5] = np.nan  # missing PI must be ignored, not poison r
    m = compute_metrics(probs, target, ["live", "dead"], pi_mean=pi_with_gap)
    ref = stats.pearsonr(p_live[5:], pi[5:])
    assert m["pearson_r"] == pytest.approx(ref.statistic)
    assert m["pearson_p"] == pytest.approx(ref.pvalue)
    assert m["pearson_n"] == 195
    assert m["pearson_r"] < -0.8


def test_metrics_errors_are_actionable():
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(np.zeros((4, 3)), np.zeros(4, int), ["live", "dead"])
    with pytest.raises(ValueError, match="outside"):
        compute_metrics(np.full((2, 2), 0.5), np.array([0, 2]), ["live", "dead"])
    with pytest.raises(ValueError, match="'live'"):
        compute_metrics(np.full((2, 2), 0.5), np.array([0, 1]), ["control", "celldeath"], pi_mean=np.ones(2))

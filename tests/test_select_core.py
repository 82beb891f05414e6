"""Selection core without a store: density definition, exact vs approximate, clusters,
steady state, anomalies, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.seed_reference import seed_anomalies, seed_top_k
from benchmarks.synthetic_calls import RARE_LABEL_BASE, make_calls
from vt_middleware.errors import ConfigError, DataError
from vt_middleware.select.clusters import SelectionParams, allocate
from vt_middleware.select.core import select_golden
from vt_middleware.select.density import approximate_density, compute_density, exact_density
from vt_middleware.types import STATUS_ERROR, STATUS_SUCCESS


def reference_density(vectors: np.ndarray, epsilon: float) -> np.ndarray:
    """The seed's definition, pair by pair."""
    n = len(vectors)
    out = np.zeros(n)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            a, b = vectors[i], vectors[j]
            sim = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            if sim >= 1 - epsilon:
                out[i] += sim
    return out


@pytest.fixture(scope="module")
def calls():
    return make_calls(n=1500, seed=4)


@pytest.fixture(scope="session")
def knn_compiled():
    """pynndescent/numba compile once per session (~20 s or more on a busy machine)."""
    data = make_calls(n=300, seed=9)
    return approximate_density(data.vectors, 0.3, k=10)


def test_exact_density_is_the_seed_definition_with_duplicates_and_blocks():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((5, 16))
    vectors = np.vstack([base[i] + 0.3 * rng.standard_normal((12, 16)) for i in range(5)])
    vectors = np.vstack([vectors, vectors[:3]])  # exact duplicates are neighbours with weight 1
    expected = reference_density(vectors, 0.3)
    graph = exact_density(vectors * 3.0, 0.3, k=5)  # scale must not matter (cosine)
    np.testing.assert_allclose(graph.densities, expected, rtol=1e-5, atol=1e-5)
    blocked = exact_density(vectors, 0.3, k=5, block_rows=7)
    np.testing.assert_allclose(blocked.densities, expected, rtol=1e-5, atol=1e-5)
    assert graph.densities[0] > 1.0 and (graph.counts >= 1).all()
    # the graph keeps each node's most similar neighbours inside epsilon, best first
    row = graph.neighbours[0][graph.neighbours[0] >= 0]
    sims = vectors[row] @ vectors[0] / (np.linalg.norm(vectors[row], axis=1) * np.linalg.norm(vectors[0]))
    assert list(np.argsort(-sims)) == list(range(len(row))) and (sims >= 0.7 - 1e-6).all()


def test_exact_graph_keeps_the_true_top_k_at_scale():
    # 1000 columns: the subsampled-cutoff top-k branch, checked against a full sort
    data = make_calls(n=1000, seed=8)
    graph = exact_density(data.vectors, 0.3, k=15)
    x = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    best = -np.sort(-sims, axis=1)[:, :15]
    np.testing.assert_allclose(graph.weights, np.where(best >= 0.7, best, 0.0), atol=1e-5)
    got = np.take_along_axis(sims, np.clip(graph.neighbours, 0, None), axis=1)
    np.testing.assert_allclose(np.where(graph.neighbours >= 0, got, 0.0), graph.weights, atol=1e-5)


def test_approximate_density_tracks_exact(knn_compiled):
    from scipy.stats import spearmanr

    data = make_calls(n=3000, seed=5)
    exact = exact_density(data.vectors, 0.3)
    approx = approximate_density(data.vectors, 0.3, sample_size=1500)
    assert approx.method == "approximate"
    assert spearmanr(exact.densities, approx.densities).statistic > 0.97
    # nodes with fewer neighbours than the graph holds get their exact density
    sparse = exact.counts < 10
    assert sparse.any()
    np.testing.assert_allclose(approx.densities[sparse], exact.densities[sparse], rtol=1e-4, atol=1e-4)
    auto = compute_density(data.vectors, 0.3, approx_threshold=1000, sample_size=1500)
    assert auto.method == "approximate"
    assert compute_density(data.vectors[:500], 0.3, approx_threshold=1000).method == "exact"


def test_tail_is_exact_when_components_fit_the_sample(knn_compiled):
    # every component sampled whole and no neighbours across components: nothing estimated
    data = make_calls(n=2000, seed=6)
    exact = exact_density(data.vectors, 0.3)
    approx = approximate_density(data.vectors, 0.3, sample_size=2000)
    assert (approx.counts > 15).any()  # saturated nodes took the sampled-tail branch
    np.testing.assert_allclose(approx.densities, exact.densities, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(approx.counts, exact.counts, atol=0.5)


def test_steady_picks_are_medoids_and_the_same_on_both_paths(knn_compiled):
    data = make_calls(n=3000, seed=7)
    exact = select_golden(data.vectors, data.statuses, 0.3, method="exact")
    approx = select_golden(data.vectors, data.statuses, 0.3, method="approximate", sample_size=500)
    assert np.array_equal(exact.labels, approx.labels)
    assert sorted(p.index for p in exact.steady) == sorted(p.index for p in approx.steady)
    again = select_golden(data.vectors, data.statuses, 0.3, method="approximate", sample_size=500, random_state=3)
    assert sorted(p.index for p in again.steady) == sorted(p.index for p in approx.steady)
    # each cluster's most central pick is its member with the largest summed similarity
    x = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
    ok = np.asarray(data.statuses) == STATUS_SUCCESS
    for cluster in {p.cluster for p in exact.steady}:
        members = np.flatnonzero(exact.labels == cluster)
        totals = (x[members] @ x[members].T).sum(axis=1)
        medoid = members[ok[members]][np.argmax(totals[ok[members]])]
        assert medoid in {p.index for p in exact.steady if p.cluster == cluster}


def test_steady_state_covers_clusters_without_duplicates_or_failures(calls):
    selection = select_golden(calls.vectors, calls.statuses, 0.3)
    picks = [p.index for p in selection.steady]
    assert 0 < len(picks) <= 50
    ok_clusters = {
        int(lab) for lab, s in zip(calls.labels, calls.statuses) if 0 <= lab < RARE_LABEL_BASE and s == STATUS_SUCCESS
    }
    ok_clusters = {c for c in ok_clusters if (calls.labels == c).sum() >= 10}
    covered = {int(calls.labels[i]) for i in picks}
    assert ok_clusters <= covered
    assert all(calls.statuses[i] == STATUS_SUCCESS for i in picks)
    sims = calls.vectors[picks] @ calls.vectors[picks].T
    np.fill_diagonal(sims, 0)
    assert sims.max() <= 0.95
    # the seed's top-k rule: everything from the biggest cluster, many near-duplicates
    seed = seed_top_k(selection.graph.densities, calls.statuses, 50)
    assert len({int(calls.labels[i]) for i in seed}) < len(covered)
    # more picks go to bigger clusters
    per = {c: sum(1 for i in picks if calls.labels[i] == c) for c in covered}
    assert per[0] >= per[max(ok_clusters)]


def test_anomalies_are_planted_groups_not_noise_or_failures(calls):
    selection = select_golden(calls.vectors, calls.statuses, 0.3)
    labels = [int(calls.labels[p.index]) for p in selection.anomalies]
    assert sorted(labels) == calls.rare_groups  # one per valid planted group, no failed group
    assert all(calls.statuses[p.index] == STATUS_SUCCESS for p in selection.anomalies)
    assert [p.density for p in selection.anomalies] == sorted(p.density for p in selection.anomalies)
    # the seed's lowest-density rule picks isolated noise instead
    seed = seed_anomalies(selection.graph.densities, calls.statuses, 10)
    assert sum(calls.labels[i] >= RARE_LABEL_BASE for i in seed) < len(calls.rare_groups)
    # min_group_size=1: singletons count too; per_group=2: two of each group
    loose = select_golden(calls.vectors, calls.statuses, 0.3, SelectionParams(min_group_size=1, per_group=2, top_k=200))
    loose_labels = [int(calls.labels[p.index]) for p in loose.anomalies]
    assert loose_labels.count(-1) > 0
    assert all(loose_labels.count(g) == 2 for g in calls.rare_groups)


def test_corrected_calls_are_not_anomalies(calls):
    first = select_golden(calls.vectors, calls.statuses, 0.3).anomalies[0]
    group = calls.labels == calls.labels[first.index]
    excluded = np.zeros(len(calls.labels), dtype=bool)
    excluded[group] = True  # the whole group was corrected as bad
    again = select_golden(calls.vectors, calls.statuses, 0.3, excluded=excluded)
    assert not any(excluded[p.index] for p in again.anomalies)
    assert len(again.anomalies) == len(calls.rare_groups) - 1


def test_allocation_is_proportional_with_one_each():
    assert allocate({0: 60, 1: 30, 2: 10}, 10) == {0: 6, 1: 3, 2: 1}
    assert allocate({0: 1000, 1: 5, 2: 5}, 4) == {0: 2, 1: 1, 2: 1}
    assert allocate({0: 10, 1: 10, 2: 10}, 2) == {0: 1, 1: 1, 2: 0}
    assert allocate({0: 2}, 10) == {0: 2}


@pytest.mark.parametrize("epsilon", [0, 2, -0.1, 2.5, float("nan"), "wide", None])
def test_epsilon_outside_range_is_a_config_error(epsilon):
    with pytest.raises(ConfigError, match="epsilon"):
        exact_density(np.eye(3), epsilon)


def test_bad_vectors_are_data_errors():
    with pytest.raises(DataError, match="NaN"):
        exact_density(np.array([[1.0, 0.0], [np.nan, 1.0]]), 0.3)
    with pytest.raises(DataError, match="mixed dimensions"):
        exact_density([[1.0, 0.0], [1.0, 0.0, 0.0]], 0.3)
    with pytest.raises(DataError, match="2-D"):
        exact_density(np.ones(4), 0.3)
    with pytest.raises(DataError, match="statuses"):
        select_golden(np.eye(3), [STATUS_SUCCESS], 0.3)


def test_degenerate_inputs_have_defined_results():
    empty = select_golden(np.zeros((0, 8)), [], 0.3)
    assert empty.steady == [] and empty.anomalies == []
    one = select_golden(np.ones((1, 8)), [STATUS_SUCCESS], 0.3)
    assert one.graph.densities.tolist() == [0.0] and one.steady == [] and one.anomalies == []
    # identical vectors: one cluster, every node has n-1 neighbours of weight 1, one pick
    same = select_golden(np.tile(np.arange(1, 9, dtype=float), (20, 1)), [STATUS_SUCCESS] * 20, 0.3)
    np.testing.assert_allclose(same.graph.densities, 19.0, rtol=1e-5)
    assert len(same.steady) == 1 and same.anomalies == []
    # zero vectors have no direction: out of the graph, never picked
    rng = np.random.default_rng(0)
    vectors = np.vstack([np.ones(8) + 0.01 * rng.standard_normal((12, 8)), np.zeros((3, 8))])
    zero = select_golden(vectors, [STATUS_SUCCESS] * 15, 0.3)
    assert not zero.graph.valid[-3:].any() and (zero.graph.densities[-3:] == 0).all()
    assert all(p.index < 12 for p in zero.steady + zero.anomalies) and zero.steady
    approx = select_golden(np.vstack([vectors] * 3), [STATUS_SUCCESS] * 45, 0.3, method="approximate")
    assert not approx.graph.valid[12:15].any() and (approx.graph.densities[12:15] == 0).all()
    assert approx.graph.components[12] != approx.graph.components[13]  # zero rows stay alone
    assert approx.steady and all(approx.graph.valid[p.index] for p in approx.steady)
    # all failures: nothing is picked
    failed = select_golden(vectors[:12], [STATUS_ERROR] * 12, 0.3)
    assert failed.steady == [] and failed.anomalies == []

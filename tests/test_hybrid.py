"""The hybrid representation: embedding ++ standardised aggregates, fitted and saved."""

from __future__ import annotations

import numpy as np
import pytest

from eventseg.data.encoders import signed_log1p
from eventseg.features.aggregates import aggregate_features
from eventseg.features.representation import HybridFeatures, HybridRepresentation


def test_blocks_carry_equal_variance_whatever_their_width():
    rng = np.random.default_rng(0)
    E = rng.normal(5.0, 3.0, (500, 64))
    A = rng.lognormal(2.0, 2.0, (500, 7))  # heavy-tailed, like money
    X = HybridRepresentation().fit_transform(E, A)
    assert X.shape == (500, 71)
    assert X[:, :64].var(0).sum() == pytest.approx(1.0) and X[:, 64:].var(0).sum() == pytest.approx(1.0)
    # the aggregate block is the signed log1p, standardised, over sqrt(width)
    expected = (signed_log1p(A) - signed_log1p(A).mean(0)) / signed_log1p(A).std(0) / np.sqrt(7)
    np.testing.assert_allclose(X[:, 64:], expected, atol=1e-12)


def test_statistics_come_from_the_fit_rows_only():
    E, A = np.arange(8.0).reshape(4, 2), np.ones((4, 1))
    rep = HybridRepresentation().fit(E[:2], A[:2])
    X = rep.transform(E, A)
    assert X[:2, :2].mean() == pytest.approx(0.0) and X[2:, :2].mean() > 1.0  # later rows sit beyond the fit rows
    assert (X[:, 2] == 0).all()  # a constant column stays 0 instead of dividing by zero


def test_bad_inputs_are_named():
    rep = HybridRepresentation().fit(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="aggregates have 3 columns"):
        rep.transform(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="one row per customer"):
        rep.transform(np.zeros((3, 2)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="embedding hold 3 NaN"):
        rep.transform(np.array([[0.0, np.nan]] * 3), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="fitted on blocks"):
        rep.transform(np.zeros((3, 2)), None)
    with pytest.raises(RuntimeError, match="not fitted"):
        HybridRepresentation().transform(np.zeros((3, 2)))


def test_hybrid_features_round_trip_and_align_by_id(tmp_path, events, schema):
    ids = np.sort(events.customer_id.unique())[::-1]  # not the aggregates' order
    E = np.random.default_rng(1).normal(size=(len(ids), 8))
    hybrid = HybridFeatures(schema, top_k_categories=3).fit(ids, E, events, fit_ids=ids[:30])
    X = hybrid.transform(ids, E, events)
    agg = aggregate_features(events.loc[events.customer_id.isin(ids[:30])], schema, top_k_categories=3)
    assert X.shape == (len(ids), 8 + agg.shape[1]) and X.dtype == np.float32
    # row i is customer ids[i]: its aggregate block follows its own n_events
    n_events = events.customer_id.value_counts().reindex(ids).to_numpy()
    col = list(agg.columns).index("n_events")
    assert np.corrcoef(X[:, 8 + col], np.log1p(n_events))[0, 1] > 0.999
    loaded = HybridFeatures.load(hybrid.save(tmp_path / "hybrid.json"))
    np.testing.assert_array_equal(loaded.transform(ids, E, events), X)


def test_hybrid_features_refuse_customers_without_events(events, schema):
    ids = np.sort(events.customer_id.unique())
    E = np.zeros((len(ids) + 1, 4))
    with pytest.raises(ValueError, match=r"1 embedded customer\(s\) have no events.*\[-5\]"):
        HybridFeatures(schema).fit(np.append(ids, -5), E, events)
    late = events.ts.min()  # nobody has an event strictly before the first one
    with pytest.raises(ValueError, match="no events before as_of"):
        HybridFeatures(schema).fit(ids, E[:-1], events, as_of=late)

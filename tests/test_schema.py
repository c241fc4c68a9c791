"""The schema names one money column that every stage uses; it is never guessed silently."""

import warnings

import numpy as np
import pandas as pd
import pytest

from eventseg.data.schema import EventSchema
from eventseg.run.errors import UserError
from eventseg.features.aggregates import rfm_features


def test_single_numeric_field_is_the_money_column():
    assert EventSchema(categorical=("c",), numeric=("amount",)).amount_col == "amount"
    assert EventSchema(categorical=("c",)).amount_col is None


def test_several_numeric_fields_warn_unless_amount_col_is_set():
    with pytest.warns(UserWarning, match="data.amount_col is not set.*'quantity'"):
        assert EventSchema(numeric=("quantity", "amount")).amount_col == "quantity"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schema = EventSchema(numeric=("quantity", "amount"), amount_col="amount")
    assert EventSchema.from_config(schema.to_dict()) == schema  # round trip through a checkpoint


def test_amount_col_outside_the_numeric_fields_is_a_clear_error():
    with pytest.raises(UserError, match=r"data.amount_col='price' is not one of the numeric fields.*\['amount'\]"):
        EventSchema(numeric=("amount",), amount_col="price")


def test_monetary_is_the_sum_of_the_amount_column():
    events = pd.DataFrame({"customer_id": [1, 1, 2], "ts": pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-03"]),
                           "quantity": [5.0, 7.0, 1.0], "amount": [10.0, 2.5, 4.0]})
    rfm = rfm_features(events, EventSchema(numeric=("quantity", "amount"), amount_col="amount"))
    np.testing.assert_allclose(rfm["monetary"].to_numpy(), [12.5, 4.0])

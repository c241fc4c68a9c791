"""Hand-made features of each customer's history, and the representation the heads see.

- `aggregates`: counts, recency, tenure, amounts by window and category shares (the analyst's
  baseline, RFM included) as a fitted builder that describes new customers the same way.
- `representation`: the embedding joined with the standardised aggregates (the hybrid).
"""

"""The cluster and segments stages.

- `clusterer`: `SegmentClusterer` (scikit-learn contract): HDBSCAN's dense groups, predictive
  broad segments over them, everyone placed, saved without pickle.
- `profiles`: each segment's size, propensities, behaviour and a marketer's name.
- `insights`: observed outcomes, rules, distinctive values and actions per segment.
- `predictiveness`: how much of held-out outcomes the segments explain, beside k-means on RFM.
"""

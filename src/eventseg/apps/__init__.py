"""Jobs on a finished run, which they load frozen and verified (`score.FrozenRun`): scoring
new customers (`score`), segments over time (`monitor`), lookalike audiences (`lookalike`) and
the fairness audit (`audit`)."""

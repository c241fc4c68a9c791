"""What every stage stands on: a run folder that can be trusted.

- `layout`: every file of a run, named once (`RunLayout`); `columns`: the score, tier and
  outcome column names stages hand to each other (`ScoreColumn`).
- `manifest`: the lock and `run.json` (status, stage fingerprints, SHA-256 of every file) that
  readers verify; `stages`: skip a stage whose inputs and config are unchanged.
- `artifacts`: atomic writes, sidecars; `safe_skops`: scikit-learn objects without pickle.
- `config`: the packaged Hydra configs and the checks that run before any work; `errors`: the
  error types that become one `error:` line.
"""

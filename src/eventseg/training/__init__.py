"""The train stage: the Lightning module that joins encoder and objectives (`module`), the
training run with its budget and callbacks (`train`, `callbacks`), checkpoints read back on their
own (`checkpoint`) and the store that lets runs share a trained model (`store`)."""

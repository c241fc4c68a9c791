"""Sequence autoencoder: event encoder, sequence encoder, decoder, losses, LightningModule."""

from eventseg.models.autoencoder import SequenceAutoencoder, TrainingDivergedError

__all__ = ["SequenceAutoencoder", "TrainingDivergedError"]

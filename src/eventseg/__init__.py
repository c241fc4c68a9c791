"""eventseg: behavioural customer embeddings, segments and propensities from event histories."""

__version__ = "0.1.0"

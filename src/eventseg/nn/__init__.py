"""Network building blocks: the event encoder (one embedding table per categorical field,
numerics and time through a linear layer), the GRU / Transformer sequence encoders and the
decoder used by the reconstruction objective."""

"""Training: loss, selective regularization, trainer loop, checkpoints, DDP, EMA, validation."""

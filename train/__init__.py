"""DeepSight training: stage 0 encoder, stage 1 align, stage 2 SFT (see train/README.md)."""

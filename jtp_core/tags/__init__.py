"""Tag post-processing: calibrated per-tag thresholds and the JTP-3 / Hydra implication modes."""

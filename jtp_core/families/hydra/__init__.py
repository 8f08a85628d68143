"""JTP-3 Hydra and Hydra 3.5 (NaFlex SigLIP2 taggers)."""

"""RedRocket's JTP-3 Hydra and Hydra 3.5 taggers.

A NaFlex SigLIP2 So400m/16 backbone with per-tag attention-pool heads.
"""

"""JTP-3 Hydra and Hydra 3.5: timm's NaFlex SigLIP2 So400m/16 at variable resolution, per-tag attention heads."""

from .family import HydraFamily

HYDRA = HydraFamily()

__all__ = ["HYDRA", "HydraFamily"]

"""JTP-1 PILOT and JTP-1.1 PILOT2: timm's SigLIP So400m ViT at a fixed 384², a linear or gated head."""

from .family import PilotFamily, PilotPreprocessor

PILOT = PilotFamily()

__all__ = ["PILOT", "PilotFamily", "PilotPreprocessor"]

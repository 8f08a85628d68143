"""Overlay colormaps as piecewise-linear (position, (r, g, b)) anchors: no plotting library, and no torch, so the
command line can offer their names without importing it."""

COLORMAPS: dict[str, tuple[tuple[float, tuple[float, float, float]], ...]] = {
    "jet": (
        (0.0, (0.0, 0.0, 0.5)), (0.125, (0.0, 0.0, 1.0)), (0.375, (0.0, 1.0, 1.0)),
        (0.625, (1.0, 1.0, 0.0)), (0.875, (1.0, 0.0, 0.0)), (1.0, (0.5, 0.0, 0.0)),
    ),
    "inferno": (
        (0.0, (0.0, 0.0, 0.016)), (0.25, (0.34, 0.06, 0.43)), (0.5, (0.73, 0.22, 0.33)),
        (0.75, (0.98, 0.55, 0.04)), (1.0, (0.99, 1.0, 0.64)),
    ),
    "gray": ((0.0, (0.0, 0.0, 0.0)), (1.0, (1.0, 1.0, 1.0))),
}

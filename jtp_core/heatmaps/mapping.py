"""Putting a model-resolution map (a grid of cells) onto an output image, with bounded memory.

A grid map ``g`` [gh, gw] lands on an image as ``left @ g @ right.T`` (bilinear: each output row/column is a
weighted pair of grid rows/columns), so one output row block costs ``rows x W`` floats and the full image is
never held in float32 unless asked for. EXIF orientation is folded into the same two matrices: the map is
computed on the image as the model saw it (the JTP reference does not apply EXIF transpose) and comes out in
the orientation viewers show, so it can be laid over the displayed image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# EXIF orientation → (transpose the grid, flip output rows, flip output columns), as PIL's exif_transpose does:
# 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90
_ORIENTATIONS = {
    1: (False, False, False), 2: (False, False, True), 3: (False, True, True), 4: (False, True, False),
    5: (True, False, False), 6: (True, False, True), 7: (True, True, True), 8: (True, True, False),
}
BLOCK_BYTES = 16 << 20  # float32 working set per row block, per map


@dataclass(frozen=True)
class GridMapping:
    """``out = left @ g' @ right.T`` with ``g'`` the grid (transposed when ``transpose``): [H, W] output."""

    left: torch.Tensor  # [H, g1] float32
    right: torch.Tensor  # [W, g2] float32
    transpose: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the output."""
        return self.left.shape[0], self.right.shape[0]

    def block_rows(self, maps: int = 1) -> int:
        """Rows per block so that ``maps`` float32 blocks stay within BLOCK_BYTES."""
        return max(1, BLOCK_BYTES // (4 * max(1, self.size[1]) * max(1, maps)))

    def rows(self, grids: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Grids [..., gh, gw] → output rows start:stop [..., stop - start, W] (float32)."""
        grids = grids.float()
        if self.transpose:
            grids = grids.transpose(-2, -1)
        return self.left[start:stop] @ grids @ self.right.T

    def full(self, grids: torch.Tensor) -> torch.Tensor:
        """The whole output [..., H, W] float32: O(maps x pixels) memory, for small images and tests."""
        return self.rows(grids, 0, self.size[0])


def orient(rows: torch.Tensor, cols: torch.Tensor, orientation: int = 1) -> GridMapping:
    """Per-axis weights of the image as stored ([H, gh], [W, gw]) → the mapping in display orientation."""
    transpose, flip_rows, flip_cols = _ORIENTATIONS.get(int(orientation or 1), _ORIENTATIONS[1])
    left, right = (cols, rows) if transpose else (rows, cols)
    if flip_rows:
        left = left.flip(0)
    if flip_cols:
        right = right.flip(0)
    return GridMapping(left.contiguous(), right.contiguous(), transpose)


def exif_orientation(image) -> int:
    """The EXIF orientation tag of a PIL image (1 when absent or unreadable)."""
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not stop a heatmap
        return 1


def axis_weights(length: int, fitted: int, offset: int, patch: int, grid: int) -> torch.Tensor:
    """[length, grid] linear-interpolation weights from grid cells to the original pixels along one axis.

    The image of ``length`` pixels was resized to ``fitted`` and placed at ``offset`` in the model's input,
    whose first ``grid * patch`` pixels the patches cover; pixels beyond them get 0 (never seen).
    """
    # pixel centres, in the padded square's pixels (Pillow's resize maps centres: (i + 0.5) * fitted / length)
    centres = offset + (torch.arange(length, dtype=torch.float64) + 0.5) * fitted / length
    position = (centres / patch - 0.5).clamp(0, grid - 1)  # in cells; cell centres at integers
    low = position.floor().long().clamp(max=max(grid - 2, 0))
    high = (low + 1).clamp(max=grid - 1)
    frac = position - low
    weights = torch.zeros(length, grid, dtype=torch.float64)
    weights.scatter_add_(1, low[:, None], (1 - frac)[:, None])
    weights.scatter_add_(1, high[:, None], frac[:, None])
    weights[centres >= grid * patch] = 0.0  # never seen by any patch
    return weights.float()

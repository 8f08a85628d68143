"""NaFlex target sizes and an exact port of libvips' downsizing (``vips_resize`` with a reducing gap).

Hydra 3.5 was trained on images resized by libvips (pyvips ``resize(kernel=mks2013, gap=3.0)`` on 16-bit
linear light). Approximations (bicubic, a float-matrix MKS) flip percent-level tag decisions, so this module
re-does libvips 8.18's integer arithmetic step by step (``resize.c``, ``reducev.cpp``/``reduceh.cpp``,
``shrinkv.c``/``shrinkh.c``, ``templates.h``, ``bicubic.cpp`` for the rare enlargement):

- ``vips_resize`` passes 1/scale to ``reducev`` then ``reduceh`` (scale computed in doubles exactly as pyvips does).
- Each reduce first box-shrinks by ``max(1, floor(in / out / gap))`` (rounding ``ceil``, edge rows/columns
  repeated), then convolves with the kernel stretched by the residual factor. The kernel is sampled at 65 phases
  (1/64 pixel), normalised to sum 1, truncated to 12-bit fixed point; each output is
  ``clip((sum(c * p) + 2048) >> 12)``; edges repeat the border pixel.

Everything works on integer tensors ``[..., H, W, C]`` (any leading batch dims, any device).
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import torch

from ...errors import ImageError

PATCH_SIZE = 16
MIN_SEQ, MAX_SEQ = 64, 2048

TRANSFORM_SCALE = 64  # libvips: VIPS_TRANSFORM_SCALE, mask phases per pixel
INTERPOLATE_SHIFT = 12  # libvips: fixed-point coefficient bits
INTERPOLATE_SCALE = 1 << INTERPOLATE_SHIFT

KERNELS = ("mks2013", "lanczos3")
FORMAT_MAX = {"uchar": 255, "ushort": 65535}


# --------------------------------------------------------------------------------------------- target size


def check_max_seq(max_seq: int) -> int:
    if not isinstance(max_seq, int) or isinstance(max_seq, bool) or not MIN_SEQ <= max_seq <= MAX_SEQ:
        raise ValueError(f"max_seq must be an integer in {MIN_SEQ}..{MAX_SEQ}, got {max_seq!r}")
    return max_seq


def size_for_seq(
    height: int, width: int, max_seq: int = 1024, patch: int = PATCH_SIZE, eps: float = 1e-5
) -> tuple[int, int]:
    """Output (h, w) for a NaFlex budget of ``max_seq`` patches, as both RedRocket releases compute it.

    Sides are floored to whole patches and never upscaled (except to one patch); when the floored grid is over
    budget, a ratio r in [eps, 1] is binary-searched so that grid(r) = ceil(side * r / patch) fits.
    """
    check_max_seq(max_seq)
    if height < 1 or width < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    max_y, max_x = max(height // patch, 1), max(width // patch, 1)
    if max_y * max_x <= max_seq:
        return patch * max_y, patch * max_x

    def grid(ratio: float) -> tuple[int, int]:
        return min(math.ceil(height * ratio / patch), max_y), min(math.ceil(width * ratio / patch), max_x)

    lo, hi = eps, 1.0
    best = grid(lo)
    if best[0] * best[1] > max_seq:
        raise ImageError(
            f"image {width}x{height} is too large for a sequence of {max_seq} patches "
            f"(even at the smallest scale it needs {best[0]}x{best[1]} = {best[0] * best[1]})"
        )
    while hi - lo >= eps:
        mid = (lo + hi) / 2
        gy, gx = grid(mid)
        if gy * gx > max_seq:
            hi = mid
        else:
            lo, best = mid, (gy, gx)
            if gy * gx == max_seq:
                break
    return patch * best[0], patch * best[1]


# --------------------------------------------------------------------------------------------- sRGB <-> linear LUTs


@cache
def srgb_to_linear16_lut() -> torch.Tensor:
    """8-bit sRGB -> 16-bit linear (int32 [256]), RedRocket's table for ``mks2013-linear``."""
    values = [round(c * 257 / 12.92) if c <= 10 else round(((c + 14.025) / 269.025) ** 2.4 * 65535) for c in range(256)]
    return torch.tensor(values, dtype=torch.int32)


@cache
def linear16_to_srgb_lut() -> torch.Tensor:
    """16-bit linear -> 8-bit sRGB (uint8 [65536]), the inverse table."""
    v = torch.arange(65536, dtype=torch.float64)
    high = (v / 65535.0) ** (1.0 / 2.4) * 269.025 - 14.025
    low = v * (12.92 / 257)
    # Python's round() is round-half-even, as is torch.round; the tables were built with round()
    return torch.where(v <= 205, low, high).round().to(torch.uint8)


# --------------------------------------------------------------------------------------------- kernels


def kernel_value(kernel: str, x: float) -> float:
    """libvips' filter<K>(x), same operation order (templates.h)."""
    if kernel == "mks2013":
        x = abs(x)
        if x >= 2.5:
            return 0.0
        if x >= 1.5:
            return (x - 5.0 / 2.0) * (x - 5.0 / 2.0) / -8.0
        if x >= 0.5:
            return (4.0 * x * x - 11.0 * x + 7.0) / 4.0
        return 17.0 / 16.0 - 7.0 * x * x / 4.0
    if kernel == "lanczos3":
        if -3 <= x <= 3:
            return _sinc(x) * _sinc(x / 3)
        return 0.0
    raise ValueError(f"unknown resize kernel {kernel!r}; expected one of {KERNELS}")


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def kernel_points(kernel: str, shrink: float) -> int:
    """vips_reduce_get_points: taps of the stretched kernel (C rint = round half to even)."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown resize kernel {kernel!r}; expected one of {KERNELS}")
    return 2 * int(round(3 * shrink)) + 1


@lru_cache(maxsize=64)
def _mask_table(kernel: str, n_points: int, shrink: float) -> torch.Tensor:
    """int32 [65, n]: the 12-bit masks for phases 0/64 .. 64/64 (calculate_coefficients + (short) truncation)."""
    rows = []
    for phase in range(TRANSFORM_SCALE + 1):
        x = phase / TRANSFORM_SCALE
        half = x + n_points / 2.0 - 1
        coeffs = [kernel_value(kernel, (i - half) / shrink) for i in range(n_points)]
        total = 0.0
        for c in coeffs:
            total += c
        rows.append([int(c / total * INTERPOLATE_SCALE) for c in coeffs])  # int() truncates like (short)
    return torch.tensor(rows, dtype=torch.int32)


# --------------------------------------------------------------------------------------------- box shrink


def _box_shrink(x: torch.Tensor, axis: int, factor: int, fmt: str) -> torch.Tensor:
    """vips_shrinkv / vips_shrinkh with ceil=TRUE: average blocks of ``factor``, last block padded by repetition."""
    length = x.shape[axis]
    out_len = -(-length // factor)
    pad = out_len * factor - length
    if pad:
        edge = x.narrow(axis, length - 1, 1)
        x = torch.cat([x, edge.expand(*[pad if d == axis % x.dim() else -1 for d in range(x.dim())])], dim=axis)
    shape = list(x.shape)
    axis = axis % x.dim()
    shape[axis : axis + 1] = [out_len, factor]
    sums = x.to(torch.int32).reshape(shape).sum(dim=axis + 1, dtype=torch.int32)
    amend = factor // 2
    if fmt == "uchar":
        # fixed-point path: ((sum + amend) * (2^32 // (256 * factor))) >> 24, in uint32 (no overflow possible)
        multiplier = (1 << 32) // (256 * factor)
        return ((sums.to(torch.int64) + amend) * multiplier >> 24).to(torch.int32)
    return (sums + amend) // factor


# --------------------------------------------------------------------------------------------- reduce


def _positions(out_len: int, residual: float, offset: float, strip: int) -> list[float]:
    """Sample positions as libvips' generators walk them: recomputed at each region start, then += residual."""
    positions = []
    pos = 0.0
    for i in range(out_len):
        if i % strip == 0:
            pos = (i + 0.5) * residual - 0.5 - offset
        positions.append(pos)
        pos += residual
    return positions


def _reduce_axis(x: torch.Tensor, axis: int, shrink: float, kernel: str, fmt: str, gap: float) -> torch.Tensor:
    """vips_reducev (axis -3) or vips_reduceh (axis -2) by ``shrink`` >= 1 with a reducing gap."""
    length = x.shape[axis]
    out_len = int(length / shrink + 0.5)  # VIPS_ROUND_UINT
    if out_len <= 0:
        raise ImageError("image has shrunk to nothing")
    extra = out_len * shrink - length
    residual = shrink
    if gap > 0.0:
        int_shrink = max(1, math.floor(length / out_len / gap))
        if int_shrink > 1:
            x = _box_shrink(x, axis, int_shrink, fmt)
            extra /= int_shrink
            residual /= int_shrink
    if residual == 1.0:
        return x
    n = kernel_points(kernel, residual)
    offset = (1 + extra) / 2.0 - 1
    table = _mask_table(kernel, n, residual).to(x.device)
    # reduceh regions span whole rows; reducev output is generated in strips (restart every 16 rows)
    strip = 16 if axis % x.dim() == x.dim() - 3 else 1 << 30
    starts, phases = [], []
    for pos in _positions(out_len, residual, offset, strip):
        starts.append(int(pos))
        s = int(pos * TRANSFORM_SCALE * 2)
        phases.append(((s & (TRANSFORM_SCALE * 2 - 1)) + 1) >> 1)
    start = torch.tensor(starts, dtype=torch.int64, device=x.device) - (math.ceil(n / 2) - 1)
    coeffs = table[torch.tensor(phases, dtype=torch.int64, device=x.device)]  # [out, n]
    src_len = x.shape[axis]
    # gather whole rows/columns along dim 0 (contiguous copies), then move the axis back
    source = x.to(torch.int32).movedim(axis, 0).contiguous()
    view = [out_len] + [1] * (x.dim() - 1)
    acc = None
    # int32 is enough: |sum| <= 65535 * sum(|c|) < 2^31 for these kernels
    for i in range(n):
        index = (start + i).clamp_(0, src_len - 1)
        taps = source.index_select(0, index).mul_(coeffs[:, i].reshape(view))
        acc = taps.add_(INTERPOLATE_SCALE >> 1) if acc is None else acc.add_(taps)
    acc = acc.movedim(0, axis)
    return acc.bitwise_right_shift_(INTERPOLATE_SHIFT).clamp_(0, FORMAT_MAX[fmt])


# --------------------------------------------------------------------------------------------- enlarge


@cache
def _catmull_table() -> torch.Tensor:
    """float64 [65, 4]: libvips' calculate_coefficients_catmull at phases 0/64 .. 64/64."""
    rows = []
    for phase in range(TRANSFORM_SCALE + 1):
        x = phase / TRANSFORM_SCALE
        cr1 = 1.0 - x
        cr2 = -0.5 * x
        cr3 = cr1 * cr2
        cone = cr1 * cr3
        cfou = x * cr3
        cr4 = cfou - cone
        ctwo = cr1 - cone + cr4
        cthr = x - cfou - cr4
        rows.append([cone, ctwo, cthr, cfou])
    return torch.tensor(rows, dtype=torch.float64)


def _catmull_taps(positions: list[float], fmt: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(tap start index in the original image, coefficients [out, 4]) for libvips' bicubic interpolator."""
    table = _catmull_table()
    if fmt == "uchar":
        table = (table * INTERPOLATE_SCALE).trunc()  # vips_bicubic_matrixi: (int) truncation
    starts, phases = [], []
    for pos in positions:
        starts.append(int(pos) - 3)  # window (int)pos - 1 .. + 2 in an image embedded by 2 pixels
        s = int(pos * TRANSFORM_SCALE * 2)
        phases.append(((s & (TRANSFORM_SCALE * 2 - 1)) + 1) >> 1)
    return torch.tensor(starts, dtype=torch.int64, device=device), table[phases].to(device)


def _interp_axis(x: torch.Tensor, axis: int, start: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    view = [1] * x.dim()
    view[axis % x.dim()] = coeffs.shape[0]
    acc = None
    for i in range(4):
        index = (start + i).clamp(0, x.shape[axis] - 1)
        term = x.index_select(axis, index) * coeffs[:, i].reshape(view).to(x.dtype)
        acc = term if acc is None else acc + term
    return acc


def _enlarge(x: torch.Tensor, hscale: float, vscale: float, fmt: str) -> torch.Tensor:
    """vips_affine(scale, idx=idy=0.5, bicubic, extend copy) as vips_resize calls it for any axis > 1 (8.18).

    Sample position in the source is out/scale - 0.5 on BOTH axes (libvips 8.18; 8.19 changed upscale centring),
    so an axis that is not enlarged is still interpolated half a pixel off. The 4x4 stencil is evaluated as
    rows first, then columns, as bicubic.cpp does.
    """
    in_h, in_w = x.shape[-3], x.shape[-2]
    a, d = (hscale if hscale > 1.0 else 1.0), (vscale if vscale > 1.0 else 1.0)
    tmp = 1.0 / (a * d)  # vips__transform_calc_inverse
    ia, id_ = tmp * d, tmp * a
    out_w, out_h = int(in_w * a + 0.5), int(in_h * d + 0.5)  # oarea, VIPS_ROUND_INT
    work = x.to(torch.int64 if fmt == "uchar" else torch.float64)
    # x: 0 * ia + 0.5 (idx) + 1 (window offset), then += ia per pixel along the row; y: recomputed per row
    positions, ix = [], 1.5
    for _ in range(out_w):
        positions.append(ix)
        ix += ia
    start, coeffs = _catmull_taps(positions, fmt, x.device)
    work = _interp_axis(work, -2, start, coeffs)
    if fmt == "uchar":
        work = (work + (INTERPOLATE_SCALE >> 1)) >> INTERPOLATE_SHIFT  # row sums rounded, not clipped
    start, coeffs = _catmull_taps([id_ * y + 1.5 for y in range(out_h)], fmt, x.device)
    work = _interp_axis(work, -3, start, coeffs)
    if fmt == "uchar":
        work = (work + (INTERPOLATE_SCALE >> 1)) >> INTERPOLATE_SHIFT
    if fmt == "uchar":
        return work.clamp(0, 255).to(torch.int32)
    return work.clamp(0, FORMAT_MAX[fmt]).trunc().to(torch.int32)  # double -> ushort truncates


# --------------------------------------------------------------------------------------------- public


def vips_resize(
    x: torch.Tensor, out_h: int, out_w: int, kernel: str = "mks2013", fmt: str = "ushort", gap: float = 3.0
) -> torch.Tensor:
    """libvips ``resize(out_w / w, vscale=out_h / h, kernel=kernel, gap=gap)`` on integer pixels [..., H, W, C].

    ``fmt`` is the libvips band format the values stand for ("uchar" 0..255 or "ushort" 0..65535); it picks
    the box-shrink rounding and the clip. Returns int32 values of the same range.
    """
    if fmt not in FORMAT_MAX:
        raise ValueError(f"fmt must be one of {tuple(FORMAT_MAX)}, got {fmt!r}")
    if kernel not in KERNELS:
        raise ValueError(f"unknown resize kernel {kernel!r}; expected one of {KERNELS}")
    in_h, in_w = x.shape[-3], x.shape[-2]
    if (in_h, in_w) == (out_h, out_w):
        return x.to(torch.int32)
    # the scales as pyvips computes them (Python float division), then vips_resize's clamps
    hscale = max(out_w / in_w, 1.0 / in_w)
    vscale = max(out_h / in_h, 1.0 / in_h)
    if vscale < 1.0:
        x = _reduce_axis(x, -3, 1.0 / vscale, kernel, fmt, gap)
    if hscale < 1.0:
        x = _reduce_axis(x, -2, 1.0 / hscale, kernel, fmt, gap)
    if hscale > 1.0 or vscale > 1.0:
        x = _enlarge(x, hscale, vscale, fmt)
    if x.shape[-3:-1] != (out_h, out_w):
        raise ImageError(f"resize produced {x.shape[-2]}x{x.shape[-3]}, expected {out_w}x{out_h}")
    return x.to(torch.int32)


def mks2013_linear_resize(srgb: torch.Tensor, out_h: int, out_w: int, gap: float = 3.0) -> torch.Tensor:
    """Hydra 3.5's ``mks2013-linear``: 8-bit sRGB -> 16-bit linear LUT -> MKS2013 resize -> LUT back (uint8)."""
    lut_in = srgb_to_linear16_lut().to(srgb.device)
    lut_out = linear16_to_srgb_lut().to(srgb.device)
    linear = lut_in.index_select(0, srgb.reshape(-1).to(torch.int32)).reshape(srgb.shape)
    resized = vips_resize(linear, out_h, out_w, "mks2013", "ushort", gap)
    return lut_out.index_select(0, resized.reshape(-1)).reshape(resized.shape)


def lanczos3_resize(srgb: torch.Tensor, out_h: int, out_w: int, gap: float = 3.0) -> torch.Tensor:
    """Hydra's ``lanczos``: LANCZOS3 directly on 8-bit sRGB (uint8 out)."""
    return vips_resize(srgb, out_h, out_w, "lanczos3", "uchar", gap).to(torch.uint8)

"""Opt-in ``torch.compile`` of the model's forward pass, falling back to eager mode when compiling fails."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)


class CompiledForward:
    """Calls ``model`` through ``torch.compile``, compiled on first use and kept for later calls.

    Compilation happens lazily inside the first call, so its errors (no C++ compiler, no Triton, an
    unsupported op) surface there: they are logged once and this and every later call run the plain model.
    Compiled kernels are also cached on disk by inductor, so a later process starts faster.
    """

    def __init__(self, model: nn.Module, compile_fn: Callable[..., Callable] | None = None) -> None:
        self.model = model
        self._compile_fn = compile_fn or torch.compile
        self._compiled: Callable | None = None
        self.failed: str | None = None  # why compiling was given up, once it was

    def __call__(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        if self.failed is None:
            try:
                if self._compiled is None:
                    self._compiled = self._compile_fn(self.model)
                return self._compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - any compiler failure means: run eager
                self.failed = f"{type(error).__name__}: {error}".splitlines()[0]
                log.warning("torch.compile failed, running the model without it (%s)", self.failed)
        return self.model(*args, **kwargs)

"""How many CPU threads torch uses: set deliberately, once, before any work (issue 20, item 8).

torch's default is one intra-op thread per core, and those threads spin while they wait. On a
2-core machine with one other busy process, two spinning threads made training 15-20x slower
(40 steps: 89 s with two threads, 6 s with one). So Omni uses ``$OMP_NUM_THREADS`` when it is
set (torchrun and Slurm set it) and one thread otherwise; ``omni-train --threads N`` overrides.
"""

from __future__ import annotations

import logging
import os

__all__ = ["default_threads", "set_threads"]

log = logging.getLogger(__name__)

ENV = "OMP_NUM_THREADS"


def default_threads() -> int:
    """``$OMP_NUM_THREADS`` when it holds a positive integer, else 1."""
    value = os.environ.get(ENV, "").strip()
    if value.isdigit() and int(value) >= 1:
        return int(value)
    return 1


def set_threads(n: int | None = None) -> int:
    """Give torch ``n`` intra-op and inter-op threads (default :func:`default_threads`); returns n.

    torch sizes the inter-op pool only before inter-op work has started in this process; when it
    refuses, the pool stays as it is (logged) and the intra-op count is still applied.
    """
    import torch

    n = default_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != n:
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError as exc:  # already set, or inter-op work already ran in this process
            log.debug("inter-op threads stay at %d: %s", torch.get_num_interop_threads(), exc)
    return n

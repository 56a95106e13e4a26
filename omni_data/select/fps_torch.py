"""FPS with torch tensors (``fps(..., engine="torch", device="cpu"|"cuda")``): descriptors held
on the device, optionally stored in float16/bfloat16 (242M x 64 x 2 bytes = 31 GB fits one
80 GB GPU).

Exactness: every distance is computed with the reference float32 operation sequence, one
elementwise op at a time (column ``j`` of the points upcast to float32, ``- c[j]``, squared,
added to the running sum in dimension order); separate elementwise kernels cannot contract a
multiply and an add into a fused multiply-add, and IEEE float32 ``+ - *`` round the same on
CPU and GPU. So with float32 storage the picks are those of the plain loop and of the numba
kernel; with float16/bfloat16 storage they are those of the numba kernel on the points rounded
to that dtype (``x.astype(float16).astype(float32)``). Ties: ``argmax`` returns the first
maximum, so for fpsample's "last" rule the points are held in reverse order.

This is the plain O(N k d) loop (no pruning): on a GPU its cost per pick is a few passes over
the N x d descriptors. Points go through in chunks so the float32 temporaries stay small.
torch is imported only here, only when this engine runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["fps_torch", "check_device", "rounded"]

_STORAGE = ("float32", "float16", "bfloat16")


def fps_torch(
    x: np.ndarray,
    k: int,
    starts: list[int],
    last: bool,
    device: str = "cpu",
    storage: str = "float32",
    chunk: int = 1 << 22,
    progress: Callable[[int, float], None] | None = None,
    progress_every: float = 5.0,
    final: bool = False,
):
    """Exact FPS on ``device``; returns ``fps.FPSResult`` (``mind`` filled when ``final``)."""
    import time

    import torch

    from omni_data.select.fps import FPSResult

    if storage not in _STORAGE:
        raise ValueError(f"storage must be one of {_STORAGE}, got {storage!r}")
    check_device(device)
    n, d = x.shape
    dt = getattr(torch, storage)
    rows = np.ascontiguousarray(x[::-1].T if last else x.T)  # (d, n); reversed for ties=last
    xt = torch.from_numpy(rows).to(device=device, dtype=dt)
    mind = torch.full((n,), float("inf"), dtype=torch.float32, device=device)
    size = min(chunk, n)
    acc = torch.empty(size, dtype=torch.float32, device=device)
    tmp = torch.empty(size, dtype=torch.float32, device=device)
    picked = np.empty(k, dtype=np.int64)
    picked_d = np.empty(k, dtype=np.float32)
    told = time.monotonic()
    for t in range(k):
        if t < len(starts):
            i = starts[t]
            col = n - 1 - i if last else i
        else:
            col = int(torch.argmax(mind))
            i = n - 1 - col if last else col
        picked[t] = i
        picked_d[t] = float(mind[col])
        if t == k - 1 and not final:
            break
        c = xt[:, col].to(torch.float32)
        for lo in range(0, n, size):
            hi = min(n, lo + size)
            a, b = acc[: hi - lo], tmp[: hi - lo]
            a.zero_()
            for j in range(d):
                b.copy_(xt[j, lo:hi])  # upcast to float32 (exact)
                b.sub_(c[j])
                b.mul_(b)
                a.add_(b)
            torch.minimum(mind[lo:hi], a, out=mind[lo:hi])
        if progress is not None and time.monotonic() - told >= progress_every:
            progress(t + 1, float(picked_d[t]))
            told = time.monotonic()
    if progress is not None:
        progress(k, float(picked_d[-1]))
    out = None
    if final:
        out = mind.cpu().numpy()
        out = np.ascontiguousarray(out[::-1]) if last else out
    return FPSResult(picked, picked_d, n * (k if final else k - 1), 0, out)


def check_device(device: str) -> None:
    """ValueError (one line) unless torch can use ``device``; ModuleNotFoundError without torch."""
    try:
        import torch
    except ImportError as exc:
        raise ModuleNotFoundError(f"device {device!r} needs torch: pip install 'omni[model]'") from exc
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} asked for but torch sees no CUDA device "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "use --device cpu"
        )


def rounded(x: np.ndarray, storage: str) -> np.ndarray:
    """The float32 values the torch engine computes with for ``storage`` (for the numba kernel)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(getattr(torch, storage))
    return t.to(torch.float32).numpy()

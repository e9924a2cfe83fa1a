"""Memory of very long sequences, from XLA's compiled memory analysis (nothing is run).

    python benchmarks/long_memory.py [--quick]

LSTM, B=16, I=16, H=64: the forward pass (last output) over T = 100,000 steps
and the training step (all outputs, MSE) over T = 20,000, for the default fused
path, ``remat="step"``, ``remat="sqrt"`` and the generic scan (``impl="scan"``).
``temp`` is XLA's scratch memory. --quick divides T by 100.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

import jaxrnn

B, I, H = 16, 16, 64
MB = 2**20
OPTIONS = {
    "default": {},
    "remat='step'": {"remat": "step"},
    "remat='sqrt'": {"remat": "sqrt"},
    "impl='scan'": {"impl": "scan"},
}


def temp_mib(fn, *args) -> float:
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes / MB


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    scale = 100 if args.quick else 1
    params = jaxrnn.init_lstm(jax.random.key(0), I, H)
    print(f"| run (B={B}, I={I}, H={H}) | " + " | ".join(OPTIONS) + " |")
    print("|---|" + "---|" * len(OPTIONS))
    runs = {
        f"forward, last output, T = {100_000 // scale:,}": (
            lambda kw: lambda p, x: jaxrnn.lstm(p, x, **kw),
            100_000 // scale,
        ),
        f"training step, T = {20_000 // scale:,}": (
            lambda kw: jax.grad(
                lambda p, x: jnp.mean(jaxrnn.lstm(p, x, return_sequences=True, **kw) ** 2)
            ),
            20_000 // scale,
        ),
    }
    for name, (make, T) in runs.items():
        x = jax.ShapeDtypeStruct((B, T, I), jnp.float32)
        cells = [f"{temp_mib(make(kw), params, x):,.1f} MiB" for kw in OPTIONS.values()]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

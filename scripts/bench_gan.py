"""Benchmark of the spectral GAN: generated spectra per second and training steps per second.

Usage: ``python scripts/bench_gan.py [--bundle bundles/gan] [--n 1000] [--repeats 10]
[--train-steps 50]``

Prints one line per figure with the device name. Generation is timed after the bundle's
warm-up compilation, as the median of ``--repeats`` calls of ``generate(n, seed)``; training
is timed over ``--train-steps`` steps of the default GAN configuration on random features of
the real shape (the step cost does not depend on the values), after one compiling step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.generate import default_generator_path, load_generator  # noqa: E402
from models.nets import build_net  # noqa: E402
from models.preprocess import StellarPreprocess  # noqa: E402
from training.gan import GanConfig, critic_kwargs, generator_kwargs  # noqa: E402
from training.gan_steps import init_state, make_train_step  # noqa: E402


def bench_generate(bundle: Path, n: int, repeats: int) -> float:
    generator = load_generator(bundle)
    generator.generate(n, 0)
    seconds = []
    for seed in range(repeats):
        started = time.perf_counter()
        generator.generate(n, seed)
        seconds.append(time.perf_counter() - started)
    return n / statistics.median(seconds)


def bench_train(steps: int) -> float:
    config = GanConfig()
    preprocess = StellarPreprocess()
    generator = build_net("gan_generator", generator_kwargs(config, preprocess))
    critic = build_net("gan_critic", critic_kwargs(config, preprocess), 1)
    state, graphs = init_state(generator, critic, config)
    train_step = make_train_step(graphs, config)
    rng = np.random.default_rng(0)
    shape = (config.n_critic + 1, config.batch_size, preprocess.n_pix)
    real = np.stack([rng.normal(0, 0.05, shape), np.ones(shape)], -1).astype(np.float32)
    masks = real[..., -1:]
    state, losses = train_step(state, real, masks, jax.random.key(0))
    jax.block_until_ready(losses)
    started = time.perf_counter()
    for step in range(steps):
        state, losses = train_step(state, real, masks, jax.random.key(step))
    jax.block_until_ready(losses)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(default_generator_path()))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=50)
    args = parser.parse_args()
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    rate = bench_generate(Path(args.bundle), args.n, args.repeats)
    print(f"generate n={args.n}: {rate:,.0f} spectra/s ({device})")
    config = GanConfig()
    steps = bench_train(args.train_steps)
    print(
        f"GAN training ({config.loss}, batch {config.batch_size}, n_critic {config.n_critic}): "
        f"{steps:.2f} steps/s ({device})"
    )


if __name__ == "__main__":
    main()

"""The GAN's own step functions (the classifier loop in training/loop.py is not for GANs).

Usage::

    state, graphs = init_state(generator, critic, config)
    train_step = make_train_step(graphs, config)
    state, losses = train_step(state, real, masks, key)

Everything is a pure function of a :class:`GanState` pytree (the networks are split with
``nnx.split`` and merged inside the jitted step), which keeps WGAN-GP's gradient penalty,
a gradient with respect to the critic's input inside the critic's own gradient, simple.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

LOSSES = ("wgan-gp", "hinge", "dcgan")


class Graphs(NamedTuple):
    """The static structure of both networks (what ``nnx.merge`` needs besides the state)."""

    generator: Any
    critic: Any


@struct.dataclass
class GanState:
    """All trainable state of a GAN run: what Orbax checkpoints and resumes."""

    step: jax.Array
    generator: Any
    ema: Any
    critic: Any
    critic_stats: Any
    generator_opt: Any
    critic_opt: Any


def _optimizer(config) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate, b1=config.beta1, b2=config.beta2)


def init_state(generator: nnx.Module, critic: nnx.Module, config) -> tuple[GanState, Graphs]:
    """Split the networks into graph definitions and a fresh :class:`GanState`."""
    if config.loss not in LOSSES:
        raise ValueError(f"unknown GAN loss {config.loss!r}; known: {LOSSES}")
    gen_def, gen_params = nnx.split(generator, nnx.Param)
    critic_def, critic_params, critic_stats = nnx.split(critic, nnx.Param, ...)
    tx = _optimizer(config)
    state = GanState(
        step=jnp.asarray(0, jnp.int32),
        generator=gen_params,
        ema=jax.tree.map(jnp.copy, gen_params),
        critic=critic_params,
        critic_stats=critic_stats,
        generator_opt=tx.init(gen_params),
        critic_opt=tx.init(critic_params),
    )
    return state, Graphs(gen_def, critic_def)


def generator_forward(graphs: Graphs, params, z: jax.Array) -> jax.Array:
    """Flux channel (batch, n_pix, 1) for latent vectors ``z``."""
    return nnx.merge(graphs.generator, params)(z)


def _critic_forward(graphs: Graphs, params, stats, features):
    """Critic scores; ``stats`` is any non-parameter state (empty for the critics here)."""
    return nnx.merge(graphs.critic, params, stats)(features), stats


def _fake_features(graphs: Graphs, gen_params, z, mask) -> jax.Array:
    """Generated flux masked by a real spectrum's coverage, with that coverage channel."""
    flux = generator_forward(graphs, gen_params, z)
    return jnp.concatenate([flux * mask, mask], axis=-1)


def _gradient_penalty(graphs, params, stats, real, fake, key) -> jax.Array:
    """WGAN-GP: (|grad_x D(x)| - 1)^2 on random interpolates of real and fake features."""
    eps = jax.random.uniform(key, (real.shape[0], 1, 1))
    mixed = eps * real + (1.0 - eps) * fake

    def score_sum(x):
        return _critic_forward(graphs, params, stats, x)[0].sum()

    grads = jax.grad(score_sum)(mixed)
    norms = jnp.sqrt(jnp.sum(grads**2, axis=(1, 2)) + 1e-12)
    return jnp.mean((norms - 1.0) ** 2)


def _critic_loss(params, stats, gen_params, real, mask, key, graphs, config):
    k_z, k_gp = jax.random.split(key)
    z = jax.random.normal(k_z, (real.shape[0], config.latent_dim))
    fake = jax.lax.stop_gradient(_fake_features(graphs, gen_params, z, mask))
    d_real, _ = _critic_forward(graphs, params, stats, real)
    d_fake, _ = _critic_forward(graphs, params, stats, fake)
    if config.loss == "wgan-gp":
        penalty = _gradient_penalty(graphs, params, stats, real, fake, k_gp)
        loss = d_fake.mean() - d_real.mean() + config.gp_weight * penalty
        loss += config.drift_weight * jnp.mean(d_real**2)
    elif config.loss == "hinge":
        loss = jnp.mean(jax.nn.relu(1.0 - d_real)) + jnp.mean(jax.nn.relu(1.0 + d_fake))
    else:
        loss = jnp.mean(jax.nn.softplus(-d_real)) + jnp.mean(jax.nn.softplus(d_fake))
    return loss, d_real.mean() - d_fake.mean()


def _generator_loss(gen_params, critic_params, stats, mask, key, graphs, config):
    z = jax.random.normal(key, (mask.shape[0], config.latent_dim))
    fake = _fake_features(graphs, gen_params, z, mask)
    d_fake, _ = _critic_forward(graphs, critic_params, stats, fake)
    if config.loss == "dcgan":
        return jnp.mean(jax.nn.softplus(-d_fake))
    return -d_fake.mean()


def make_train_step(graphs: Graphs, config):
    """A jitted ``(state, real, masks, key) -> (state, losses)``.

    ``real`` holds ``n_critic + 1`` batches of real features and ``masks`` as many batches
    of coverage masks (batch, n_pix, 1); the first ``n_critic`` pairs train the critic,
    the last mask trains the generator. The EMA of the generator is updated after it.
    """
    tx = _optimizer(config)
    critic_grad = jax.value_and_grad(_critic_loss, has_aux=True)
    generator_grad = jax.value_and_grad(_generator_loss)

    @jax.jit
    def train_step(state: GanState, real, masks, key):
        keys = jax.random.split(key, config.n_critic + 1)
        critic, stats, critic_opt = state.critic, state.critic_stats, state.critic_opt
        for i in range(config.n_critic):
            (d_loss, distance), grads = critic_grad(
                critic, stats, state.generator, real[i], masks[i], keys[i], graphs, config
            )
            updates, critic_opt = tx.update(grads, critic_opt, critic)
            critic = optax.apply_updates(critic, updates)
        g_loss, grads = generator_grad(
            state.generator, critic, stats, masks[-1], keys[-1], graphs, config
        )
        updates, generator_opt = tx.update(grads, state.generator_opt, state.generator)
        generator = optax.apply_updates(state.generator, updates)
        # EMA warm-up (as in TF's ExponentialMovingAverage with num_updates): early on the
        # average follows the weights closely instead of remembering the initialisation.
        step = state.step.astype(jnp.float32)
        decay = jnp.minimum(config.ema_decay, (1.0 + step) / (10.0 + step))
        ema = optax.incremental_update(generator, state.ema, 1.0 - decay)
        new_state = GanState(
            step=state.step + 1,
            generator=generator,
            ema=ema,
            critic=critic,
            critic_stats=stats,
            generator_opt=generator_opt,
            critic_opt=critic_opt,
        )
        return new_state, {"d_loss": d_loss, "g_loss": g_loss, "w_distance": distance}

    return train_step


def generate_features(graphs: Graphs, params, n: int, seed: int, latent_dim: int) -> np.ndarray:
    """``n`` generated spectra as classifier features (flux channel, coverage 1)."""
    z = jax.random.normal(jax.random.key(seed), (n, latent_dim))
    flux = np.asarray(generator_forward(graphs, params, z))
    return np.concatenate([flux, np.ones_like(flux)], axis=-1)

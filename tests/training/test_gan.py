"""The spectral GAN: network shapes, one step of training, checkpoint-resume, O-star data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.nets import build_net
from models.nets.gan import GanCritic, GanGenerator, spectral_norm_sigma
from models.preprocess import StellarPreprocess
from training.gan import GanConfig, build_gan_dataset, o_star_rows, train_gan
from training.gan_steps import _critic_loss, init_state, make_train_step

TINY = {"generator": {"widths": (16, 8, 4)}, "critic": {"widths": (8, 8)}}


def test_generator_and_critic_shapes():
    generator = GanGenerator(latent_dim=16, n_pix=256, rngs=nnx.Rngs(0))
    flux = generator(jnp.ones((3, 16)))
    assert flux.shape == (3, 256, 1)
    assert float(jnp.abs(flux).max()) <= 1.0  # out_scale * tanh
    for spectral_norm in (False, True):
        critic = GanCritic(n_channels=2, n_pix=256, spectral_norm=spectral_norm, rngs=nnx.Rngs(1))
        assert critic(jnp.zeros((3, 256, 2))).shape == (3,)
    sigma = spectral_norm_sigma(critic.out.kernel[...])
    np.testing.assert_allclose(sigma, np.linalg.svd(critic.out.kernel[...])[1][0], rtol=1e-3)
    with pytest.raises(ValueError, match="not divisible"):
        GanGenerator(n_pix=1000, rngs=nnx.Rngs(0))


def test_networks_are_registered_by_name():
    generator = build_net("gan_generator", {"latent_dim": 8, "n_pix": 64, "widths": (8, 4)})
    assert generator(jnp.zeros((2, 8))).shape == (2, 64, 1)


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
def test_one_training_step_lowers_the_critic_loss_on_a_tiny_batch(loss):
    config = GanConfig(loss=loss, latent_dim=8, batch_size=8, n_critic=1, learning_rate=2e-3)
    generator = GanGenerator(latent_dim=8, n_pix=64, widths=(8, 4), rngs=nnx.Rngs(0))
    critic = GanCritic(n_pix=64, widths=(8, 8), spectral_norm=loss != "wgan-gp", rngs=nnx.Rngs(1))
    state, graphs = init_state(generator, critic, config)
    rng = np.random.default_rng(0)
    line = np.exp(-0.5 * ((np.arange(64) - 32) / 2.0) ** 2)
    flux = -0.3 * line[None, :, None] * rng.uniform(0.5, 1.5, (8, 1, 1))
    real = np.concatenate([flux, np.ones_like(flux)], -1).astype(np.float32)
    masks = real[..., -1:]
    key = jax.random.key(3)

    def critic_loss(s):
        return float(
            _critic_loss(s.critic, s.critic_stats, s.generator, real, masks, key, graphs, config)[0]
        )

    before = critic_loss(state)
    step = make_train_step(graphs, config)
    state, losses = step(state, np.stack([real, real]), np.stack([masks, masks]), key)
    assert int(state.step) == 1
    assert np.isfinite(float(losses["d_loss"]))
    assert critic_loss(state) < before


def test_o_star_rows_are_the_real_o_library_spectra(data_dir):
    rows = o_star_rows(data_dir / "manifests" / "stellar.csv")
    assert len(rows) == 18
    assert {r.source for r in rows} == {"jhc_atlas", "pickles", "jhc_dwarfs"}
    fewer = o_star_rows(data_dir / "manifests" / "stellar.csv", (rows[0].file,))
    assert len(fewer) == 17


def test_gan_dataset_is_augmented_o_features(data_dir):
    config = GanConfig(examples=36, data_dir=data_dir)
    features, summary = build_gan_dataset(config, StellarPreprocess())
    assert features.shape == (36 + 18, 1024, 2)
    assert summary["examples_per_class"] == {"O": 54}
    # JHC atlas spectra end at 7427 A: part of the set has no red coverage.
    red = StellarPreprocess().grid > 7500
    assert 0 < (features[:, red, 1].max(axis=1) == 0).mean() < 1


def test_checkpoint_resume_continues_the_step_count(tmp_path: Path, data_dir, capsys):
    config = GanConfig(
        steps=3,
        batch_size=4,
        latent_dim=8,
        examples=8,
        checkpoint_every=2,
        plot_every=3,
        progress=False,
        data_dir=data_dir,
        **TINY,
    )
    first = train_gan(config, tmp_path)
    assert [h["step"] for h in first["history"]] == [2, 3]
    assert (tmp_path / "samples-000003.png").stat().st_size > 0
    resumed = train_gan(replace(config, steps=5), tmp_path, tmp_path / "bundle")
    assert "resuming" in capsys.readouterr().out
    assert [h["step"] for h in resumed["training"]["history"]] == [2, 3, 4, 5]
    assert resumed["metrics"]["steps"] == 5
    assert resumed["task"] == "gan" and resumed["network"]["name"] == "gan_generator"

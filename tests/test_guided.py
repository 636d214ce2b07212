"""Guided GAN: the guidance reaches the training step, alpha 0 is vanilla, refreshes update and record W."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from muon_gan_nb.data import InvalidInputError, atomic_write
from muon_gan_nb.guided import GUIDANCE_MODES, GuidedGAN, ImportanceRefresh, noise_blocks
from muon_gan_nb.models import VanillaGAN, make_gan

SMALL = dict(noise_dim=12, generator_hidden=(16,), discriminator_hidden=(16,), seed=11)


def _toy_muons(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    features = rng.normal(0, 0.3, (n, 6))
    features[:, 5] = -0.5 + 0.2 * rng.exponential(1.0, n)  # a skewed, pz-like column
    return np.clip(features, -1, 1).astype(np.float32)


REAL = _toy_muons(3_000)


def _fit(model, callbacks=(), steps: int = 30, batch_size: int = 50):
    model.compile()
    history = model.fit(REAL[:steps * batch_size], batch_size=batch_size, epochs=1, shuffle=False,
                        callbacks=list(callbacks), verbose=0)
    return history.history


def _network_weights(model):
    return model.generator.get_weights() + model.discriminator.get_weights()


def test_make_gan_builds_guided():
    model = make_gan("guided", alpha=2.0, mode="features", **SMALL)
    assert isinstance(model, GuidedGAN)
    assert (model.alpha, model.mode) == (2.0, "features")
    assert model.importances.numpy().tolist() == [0.0] * 6
    assert not model.importances.trainable


def test_noise_mode_generation_uses_adjusted_noise():
    model = GuidedGAN.build(**SMALL, alpha=1.5, mode="noise")
    weights = np.array([0.3, 0.0, 0.1, 0.1, 0.0, 0.5], np.float32)
    model.set_importances(weights)
    noise = tf.random.stateless_normal((100, 12), seed=tf.constant([7, 0], tf.int64))
    expected = model.generator(noise.numpy() * (1 + 1.5 * weights)[noise_blocks(12)], training=False).numpy()
    np.testing.assert_allclose(model.generate_scaled(100, seed=7), expected, atol=1e-6)


@pytest.mark.parametrize("mode", GUIDANCE_MODES)
def test_alpha_zero_matches_vanilla(mode):
    vanilla = VanillaGAN.build(**SMALL)
    vanilla_history = _fit(vanilla)
    guided = GuidedGAN.build(**SMALL, alpha=0.0, mode=mode)
    guided.set_importances([0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    guided_history = _fit(guided)
    tolerance = 0.0  # every mode, confidence included, is the vanilla GAN at alpha = 0
    for key in ("generator_loss", "discriminator_loss"):
        np.testing.assert_allclose(guided_history[key], vanilla_history[key], atol=tolerance, rtol=0)
    for guided_array, vanilla_array in zip(_network_weights(guided), _network_weights(vanilla)):
        np.testing.assert_allclose(guided_array, vanilla_array, atol=tolerance, rtol=0)


def test_refresh_leaves_training_noise_alone():
    vanilla = VanillaGAN.build(**SMALL)
    vanilla_history = _fit(vanilla)
    guided = GuidedGAN.build(**SMALL, alpha=0.0, mode="noise")
    refresh = ImportanceRefresh(REAL, every=10, n=1_000, seed=3)
    guided_history = _fit(guided, [refresh])
    assert len(refresh.history) == 3
    assert guided_history == vanilla_history  # refreshes draw their own noise
    for guided_array, vanilla_array in zip(_network_weights(guided), _network_weights(vanilla)):
        np.testing.assert_array_equal(guided_array, vanilla_array)


@pytest.mark.parametrize("mode", ["features", "confidence"])
def test_guidance_changes_training(mode):
    vanilla = VanillaGAN.build(**SMALL)
    vanilla_history = _fit(vanilla, steps=40)
    guided = GuidedGAN.build(**SMALL, alpha=1.5, mode=mode, classifier_trees=30)
    classifier_options = {} if mode == "confidence" else {"n_estimators": 30}
    refresh = ImportanceRefresh(REAL, every=10, n=1_000, seed=3, **classifier_options)
    guided_history = _fit(guided, [refresh], steps=40)
    assert guided_history["discriminator_loss"] != vanilla_history["discriminator_loss"]
    assert np.isfinite(guided_history["generator_loss"]).all()


def test_refresh_updates_records_and_saves(tmp_path):
    guided = GuidedGAN.build(**SMALL, alpha=1.5, mode="confidence", classifier_trees=40)
    refresh = ImportanceRefresh(REAL, every=15, n=1_500, seed=2)
    assert float(tf.reduce_max(tf.abs(guided.generated_probability(REAL[:200]) - 0.5))) == 0.0
    _fit(guided, [refresh], steps=30)

    assert [entry["iteration"] for entry in refresh.history] == [15, 30]
    np.testing.assert_allclose(guided.importances.numpy(), refresh.history[-1]["weights"], rtol=1e-6)
    assert sum(refresh.history[-1]["weights"]) == pytest.approx(1.0)
    assert refresh.history[0]["weights"] != refresh.history[1]["weights"]
    assert refresh.history[0]["seconds"] > 0
    probability = guided.generated_probability(REAL[:200]).numpy()
    assert np.abs(probability - 0.5).max() > 0.01  # the tables now hold a real classifier

    metrics = tmp_path / "metrics.json"
    with atomic_write(metrics) as temporary:
        temporary.write_text(json.dumps({"importance_refreshes": refresh.history}))
    assert json.loads(metrics.read_text())["importance_refreshes"] == refresh.history

    path = tmp_path / "guided.keras"
    guided.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, GuidedGAN)
    assert (loaded.alpha, loaded.mode, loaded.classifier_trees) == (1.5, "confidence", 40)
    np.testing.assert_array_equal(loaded.importances.numpy(), guided.importances.numpy())
    np.testing.assert_allclose(loaded.generated_probability(REAL[:200]).numpy(), probability, atol=1e-6)


def test_refresh_in_noise_mode_sets_weights():
    guided = GuidedGAN.build(**SMALL, alpha=1.5, mode="noise")
    refresh = ImportanceRefresh(REAL, every=20, n=1_000, seed=0, n_estimators=20)
    _fit(guided, [refresh], steps=20)
    assert len(refresh.history) == 1
    assert 0.4 < refresh.history[0]["auc"] <= 1.0
    np.testing.assert_allclose(guided.importances.numpy(), refresh.history[0]["weights"], rtol=1e-6)


@pytest.mark.parametrize("options, message", [
    (dict(mode="latent"), "Unknown guidance mode"),
    (dict(alpha=float("nan")), "alpha must be a finite number"),
    (dict(mode="noise", noise_dim=4), "noise_dim=4 is below 6"),
    (dict(classifier_depth=0), "classifier_depth must be an integer >= 1"),
])
def test_invalid_options_rejected(options, message):
    settings = {**SMALL, **options}
    with pytest.raises(InvalidInputError, match=message):
        GuidedGAN.build(**settings)


def test_refresh_rejects_mismatched_features():
    guided = GuidedGAN.build(**SMALL)
    guided.compile()
    with pytest.raises(InvalidInputError, match="real_scaled has 5 features"):
        guided.fit(REAL[:100], batch_size=50, verbose=0, callbacks=[ImportanceRefresh(REAL[:, :5])])


def test_refresh_rejects_options_in_confidence_mode():
    guided = GuidedGAN.build(**SMALL, mode="confidence")
    guided.compile()
    with pytest.raises(InvalidInputError, match="do not apply in confidence mode"):
        guided.fit(REAL[:100], batch_size=50, verbose=0, callbacks=[ImportanceRefresh(REAL, n_estimators=10)])

"""Training tests for the GANs: real TensorFlow training on small synthetic data at small architectures."""
import numpy as np
import pytest
import tensorflow as tf

import keras
from muon_gan_nb.models import VanillaGAN, WGANGP, make_gan

MEANS = np.array([0.3, -0.2, 0.5, 0.0, -0.4, 0.1], np.float32)
STDS = np.array([0.1, 0.2, 0.15, 0.25, 0.1, 0.2], np.float32)
SMALL = dict(noise_dim=16, generator_hidden=(32, 32), discriminator_hidden=(32, 32))


@pytest.fixture(scope="module")
def gaussian_muons() -> np.ndarray:
    "20,000 rows of an independent 6-D Gaussian inside [-1, 1], standing in for scaled muons."
    rng = np.random.default_rng(0)
    return (MEANS + STDS * rng.standard_normal((20_000, 6))).astype(np.float32)


def _batches(features, rows: int, seed: int = 0, weights=None) -> tf.data.Dataset:
    "An endless shuffled dataset of `rows`-row batches, as a training pipeline would feed `fit`."
    tensors = features if weights is None else (features, weights)
    dataset = tf.data.Dataset.from_tensor_slices(tensors).shuffle(len(features), seed=seed)
    return dataset.repeat().batch(rows, drop_remainder=True)


def _moment_errors(generated: np.ndarray) -> tuple[float, float]:
    "Summed distance of the generated means and log standard deviations from the data's."
    mean_error = float(np.abs(generated.mean(axis=0) - MEANS).sum())
    std_error = float(np.abs(np.log(generated.std(axis=0) / STDS)).sum())
    return mean_error, std_error


def test_vanilla_training_moves_moments_toward_data(gaussian_muons):
    # A larger learning rate than the study's 2e-4 lets 400 steps at batch 100 show the trend.
    model = VanillaGAN.build(**SMALL, seed=0)
    model.compile(generator_learning_rate=1e-3, discriminator_learning_rate=1e-3, steps_per_execution=20)
    mean_before, std_before = _moment_errors(model.generate_scaled(5_000, seed=1))
    history = model.fit(_batches(gaussian_muons, 100), steps_per_epoch=400, epochs=1, shuffle=False, verbose=0)
    mean_after, std_after = _moment_errors(model.generate_scaled(5_000, seed=1))
    assert np.isfinite(history.history["discriminator_loss"][-1])
    assert mean_after < 0.5 * mean_before, (mean_before, mean_after)
    assert std_after < 0.5 * std_before, (std_before, std_after)


def _critic_gradient_norm_after_training(features, gradient_penalty_weight: float) -> tuple[float, float]:
    model = WGANGP.build(**SMALL, dropout=0.0, seed=0, gradient_penalty_weight=gradient_penalty_weight)
    model.compile(steps_per_execution=20)
    before = model.critic_gradient_norm(features, 2_000)
    model.fit(_batches(features, 5 * 64), steps_per_epoch=80, epochs=1, shuffle=False, verbose=0)
    return before, model.critic_gradient_norm(features, 2_000)


def test_wgan_gradient_penalty_keeps_norm_near_one(gaussian_muons):
    before, with_penalty = _critic_gradient_norm_after_training(gaussian_muons, 10.0)
    _, without_penalty = _critic_gradient_norm_after_training(gaussian_muons, 0.0)
    assert abs(before - 1) > 0.5, before  # the untrained critic is not already 1-Lipschitz
    assert abs(with_penalty - 1) < 0.2, with_penalty
    assert without_penalty > 2, without_penalty


@pytest.mark.parametrize("n_critic", [5, 3])
def test_wgan_step_updates_critic_n_critic_times(gaussian_muons, n_critic):
    model = make_gan("wgan-gp", **SMALL, n_critic=n_critic, seed=0)
    model.compile()
    assert model.real_batches_per_step == n_critic
    logs = model.train_on_batch(gaussian_muons[:n_critic * 50], return_dict=True)
    assert int(model.discriminator_optimizer.iterations) == n_critic
    assert int(model.generator_optimizer.iterations) == 1
    assert set(logs) == {"generator_loss", "discriminator_loss", "gradient_penalty"}
    assert all(np.isfinite(value) for value in logs.values())


def test_fused_steps_match_single_steps(gaussian_muons):
    "steps_per_execution=5 runs the same computation as five separate steps."
    weights = []
    for steps_per_execution in (1, 5):
        model = VanillaGAN.build(**SMALL, seed=3)
        model.compile(steps_per_execution=steps_per_execution)
        model.fit(gaussian_muons[:2_000], batch_size=100, epochs=1, shuffle=False, verbose=0)
        assert int(model.generator_optimizer.iterations) == 20
        weights.append(model.generator.get_weights())
    for single, fused in zip(*weights):
        np.testing.assert_allclose(single, fused, rtol=1e-5, atol=1e-6)


def test_resumed_training_continues_exactly(gaussian_muons, tmp_path):
    "Saving, loading and training on gives the same generator as training straight through."
    data = gaussian_muons[:1_500]

    def fresh_model():
        model = VanillaGAN.build(**SMALL, dropout=0.0, seed=4)  # no dropout: Keras does not save dropout seeds
        model.compile(steps_per_execution=3)
        return model

    straight = fresh_model()
    straight.fit(data, batch_size=100, epochs=2, shuffle=False, verbose=0)

    interrupted = fresh_model()
    interrupted.fit(data, batch_size=100, epochs=1, shuffle=False, verbose=0)
    interrupted.save(tmp_path / "gan.keras")
    resumed = keras.saving.load_model(tmp_path / "gan.keras", safe_mode=True)
    resumed.fit(data, batch_size=100, epochs=1, shuffle=False, verbose=0)

    assert int(resumed.generator_optimizer.iterations) == 30
    for expected, actual in zip(straight.generator.get_weights(), resumed.generator.get_weights()):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_sample_weights_weight_real_muons(gaussian_muons):
    data = gaussian_muons[:1_000]

    def train(weights):
        model = VanillaGAN.build(**SMALL, dropout=0.0, seed=5)
        model.compile()
        model.fit(data, sample_weight=weights, batch_size=100, epochs=1, shuffle=False, verbose=0)
        return model.discriminator.get_weights()[0]

    unweighted = train(None)
    np.testing.assert_allclose(train(np.ones(len(data), np.float32)), unweighted, rtol=1e-5, atol=1e-6)
    uneven = np.random.default_rng(0).exponential(size=len(data)).astype(np.float32)
    assert not np.allclose(train(uneven), unweighted, atol=1e-4)


def test_weights_as_dataset_pairs(gaussian_muons):
    model = VanillaGAN.build(**SMALL, seed=6)
    model.compile(steps_per_execution=4)
    weights = np.random.default_rng(1).exponential(size=len(gaussian_muons)).astype(np.float32)
    dataset = _batches(gaussian_muons, 100, weights=weights)
    history = model.fit(dataset, steps_per_epoch=8, epochs=1, shuffle=False, verbose=0)
    assert int(model.generator_optimizer.iterations) == 8
    assert np.isfinite(history.history["discriminator_loss"][0])


def test_generation_does_not_depend_on_thread_count(monkeypatch):
    import muon_gan_nb.models as models
    from muon_gan_nb.preprocessing import MuonScaler
    from muon_gan_nb.training import TrainedRun

    model = make_gan("vanilla", seed=0)
    run = TrainedRun(model, MuonScaler().fit(np.random.default_rng(0).normal(size=(100, 6))),
                     {"mu_plus_fraction": 0.5}, {}, None)
    outputs = {}
    for workers in (4, 1):  # four Python threads, then the plain loop
        monkeypatch.setattr(models, "usable_cores", lambda: workers)
        outputs[workers] = (model.generate_scaled(25_000, batch_size=4_000, seed=3),
                            run.generate_range(5_000, 31_000, seed=3).features)
    for threaded, sequential in zip(outputs[4], outputs[1]):
        np.testing.assert_array_equal(threaded, sequential)
    assert outputs[4][0].std() > 0


_TRAIN_AND_HASH = """
import hashlib, numpy as np
from muon_gan_nb.batches import sample_batches
from muon_gan_nb.models import make_gan
import tensorflow as tf
gan = make_gan("vanilla", seed=0)
gan.compile(steps_per_execution=25)
real = np.random.default_rng(0).uniform(-1, 1, (5_000, 6)).astype(np.float32)
gan.fit(sample_batches(real, 100, seed=0), steps_per_epoch=100, epochs=1, verbose=0)
digest = hashlib.sha256()
for weight in gan.get_weights():
    digest.update(np.ascontiguousarray(weight).tobytes())
digest.update(gan.generate_scaled(30_000, batch_size=10_000, seed=1).tobytes())
print(tf.config.threading.get_intra_op_parallelism_threads(), digest.hexdigest())
"""


def test_thread_pools_leave_training_and_generation_unchanged():
    # The library's pools (one thread per operation) against TensorFlow's defaults, each in a fresh process:
    # the same 100 vanilla steps at the study's architecture and batch, and the same generated muons, bit for bit.
    import os
    import subprocess
    import sys

    from muon_gan_nb.models import THREAD_VARIABLES
    lines = {}
    for label, value in (("library", ""), ("tensorflow", "0")):
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **{name: value for name in THREAD_VARIABLES}}
        child = subprocess.run([sys.executable, "-c", _TRAIN_AND_HASH], capture_output=True, text=True, check=True,
                               env=environment)
        lines[label] = child.stdout.split()[-2:]
    assert lines["library"][0] == "1"  # one thread per operation
    assert lines["tensorflow"][0] == "0"  # TensorFlow's default
    assert lines["library"][1] == lines["tensorflow"][1]

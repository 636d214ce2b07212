"""The prompt-aware GANs: real TF training on small data, exact prompt muons, label fractions, saving."""
import keras
import numpy as np
import pytest

from muon_gan_nb.batches import sample_batches
from muon_gan_nb.data import MUON_PDG, InvalidInputError
from muon_gan_nb.models import make_gan
from muon_gan_nb.preprocessing import MuonScaler
from muon_gan_nb.prompt import (PromptAwareGAN, PromptAwareWGANGP, label_fractions, prompt_model_options,
                                training_rows)

SMALL = dict(noise_dim=16, generator_hidden=(64, 64), discriminator_hidden=(64, 64), seed=0)


@pytest.fixture(scope="module")
def data(ship_like_muons):
    "Training muons (30,000 of the bundled sample, or synthetic ones), their scaler and training rows."
    train = ship_like_muons.sample(30_000, seed=2)
    scaler = MuonScaler().fit(train.features)
    return train, scaler, training_rows(train, scaler)


def _train(gan, rows, iterations):
    gan.compile(steps_per_execution=25)
    batches = sample_batches(rows, 100 * gan.real_batches_per_step, seed=0)
    return gan.fit(batches, steps_per_epoch=iterations, epochs=1, verbose=0).history


@pytest.fixture(scope="module")
def trained(data):
    "A PromptAwareGAN trained for 300 iterations on the training rows."
    train, scaler, rows = data
    gan = make_gan("prompt", **SMALL, **prompt_model_options(train, scaler))
    history = _train(gan, rows, 300)
    return gan, history


def test_training_losses_finite(trained):
    _, history = trained
    assert np.all(np.isfinite(history["generator_loss"]))
    assert np.all(np.isfinite(history["discriminator_loss"]))


def test_prompt_fraction_matches_data(data, trained):
    train, scaler, _ = data
    gan, _ = trained
    generated = gan.generate(40_000, scaler, seed=1)
    assert generated.prompt.mean() == pytest.approx(train.prompt.mean(), abs=0.015)


def test_prompt_muons_exactly_at_origin(data, trained):
    _, scaler, _ = data
    gan, _ = trained
    rows = gan.generate_scaled(20_000, seed=3)
    generated = gan.rows_to_sample(rows, scaler)
    labelled_prompt = rows[:, 6] > 0
    assert np.all(generated.features[labelled_prompt, :2] == 0.0)
    # Displaced muons are never put at the origin: the prompt mask is exactly the prompt label.
    assert np.array_equal(generated.prompt, labelled_prompt)


def test_charge_fractions_match_data(data, trained):
    train, scaler, _ = data
    gan, _ = trained
    generated = gan.generate(40_000, scaler, seed=4)
    fractions = label_fractions(train)
    mu_plus = generated.pdg == -MUON_PDG
    assert mu_plus.mean() == pytest.approx((train.pdg == -MUON_PDG).mean(), abs=0.015)
    assert mu_plus[generated.prompt].mean() == pytest.approx(fractions["mu_plus_fraction_prompt"], abs=0.02)
    assert mu_plus[~generated.prompt].mean() == pytest.approx(fractions["mu_plus_fraction_displaced"], abs=0.02)
    assert set(np.unique(generated.pdg)) == {-MUON_PDG, MUON_PDG}


def test_save_and_load_safe_mode(data, trained, tmp_path):
    _, scaler, _ = data
    gan, _ = trained
    path = tmp_path / "prompt.keras"
    gan.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, PromptAwareGAN)
    assert loaded.prompt_fraction == gan.prompt_fraction
    np.testing.assert_array_equal(loaded.generate_scaled(2_000, seed=5), gan.generate_scaled(2_000, seed=5))
    again = loaded.generate(2_000, scaler, seed=5)
    assert np.all(again.features[again.prompt, :2] == 0.0)


def test_wgan_gp_variant_trains_and_saves(data, tmp_path):
    train, scaler, rows = data
    gan = make_gan("prompt-wgan-gp", n_critic=2, **SMALL, **prompt_model_options(train, scaler))
    assert isinstance(gan, PromptAwareWGANGP)
    history = _train(gan, rows, 50)
    assert np.all(np.isfinite(history["gradient_penalty"]))
    generated = gan.generate(10_000, scaler, seed=6)
    assert generated.prompt.mean() == pytest.approx(train.prompt.mean(), abs=0.03)
    gan.save(tmp_path / "wgan.keras")
    loaded = keras.saving.load_model(tmp_path / "wgan.keras", safe_mode=True)
    assert loaded.n_critic == 2
    np.testing.assert_array_equal(loaded.generate_scaled(1_000, seed=7), gan.generate_scaled(1_000, seed=7))


def test_bad_options(data):
    train, scaler, _ = data
    with pytest.raises(InvalidInputError, match="fraction"):
        make_gan("prompt", prompt_fraction=-0.1)
    with pytest.raises(InvalidInputError, match="MuonSample"):
        training_rows(train.features, scaler)
    with pytest.raises(InvalidInputError, match="shape"):
        PromptAwareGAN.rows_to_sample(np.zeros((5, 6)), scaler)

"""Convergence criteria on synthetic loss and AUC sequences, fed directly and through Keras fit."""
import json
import math

import keras
import numpy as np
import pytest

from muon_gan_nb.convergence import (AUCPlateau, LossStability, auc_plateau_iteration,
                                     loss_stability_iteration, relative_changes)
from muon_gan_nb.data import InvalidInputError, atomic_write

BALANCED = 2 * math.log(2)  # binary cross-entropy of a discriminator that cannot tell real from generated


def checks_at(n: int, every: int = 50) -> list[int]:
    return [every * (index + 1) for index in range(n)]


LOSS_CASES = {
    "flat": ([BALANCED] * 20, 500),
    "noisy_flat": ([BALANCED * (1 + 0.02 * (-1) ** i) for i in range(20)], 500),
    "too_noisy": ([BALANCED * (1 + 0.03 * (-1) ** i) for i in range(20)], None),
    "drifting": ([1.0 + 0.03 * i for i in range(80)], 3850),
    "exponential_drift": ([math.exp(0.011 * i) for i in range(100)], None),
    "oscillating_half_lag": ([BALANCED + 0.3 * math.sin(2 * math.pi * i / 10) for i in range(40)], None),
    "oscillating_period_lag": ([BALANCED + 0.3 * math.sin(2 * math.pi * i / 5) for i in range(40)], 500),
    "settles_late": ([2.0 - 0.1 * i for i in range(8)] + [1.3] * 12, 850),
}


@pytest.mark.parametrize("name", LOSS_CASES)
def test_loss_stability_synthetic(name):
    losses, expected = LOSS_CASES[name]
    assert loss_stability_iteration(losses, checks_at(len(losses))) == expected


def test_loss_stability_incremental_matches_function():
    for name, (losses, expected) in LOSS_CASES.items():
        callback = LossStability()
        verdicts = [callback.update(iteration, loss) for iteration, loss in zip(checks_at(len(losses)), losses)]
        assert callback.converged_iteration == expected, name
        if expected is not None:
            first_true = checks_at(len(losses))[verdicts.index(True)]
            assert first_true == expected, name


def test_relative_change_floor_for_critic_loss():
    critic = [-0.5, -0.4, -0.3, -0.2, -0.1, 0.0, 0.004, 0.0]
    changes = relative_changes(critic, lag=5, floor=0.01)
    assert np.isnan(changes[:5]).all()
    assert changes[5] == pytest.approx(0.5 / 0.5)  # negative reference: divide by its magnitude
    assert changes[6] == pytest.approx(0.404 / 0.4)
    assert changes[7] == pytest.approx(0.3 / 0.3)
    near_zero = relative_changes([0.0, 0.0003], lag=1, floor=0.01)
    assert near_zero[1] == pytest.approx(0.03)  # denominator is the floor, not zero


AUC_CASES = {
    "improving_then_flat": ([0.95, 0.85, 0.75, 0.65, 0.58, 0.55, 0.552, 0.549, 0.551, 0.550, 0.548], 2500),
    "flat": ([0.70] * 8, 1250),
    "drifting": ([0.70 - 0.004 * i for i in range(30)], None),
    "oscillating": ([0.60, 0.62] * 5, 1250),
    "noisy_flat": ([0.55, 0.553, 0.548, 0.551, 0.546, 0.552, 0.549], 1250),
}


@pytest.mark.parametrize("name", AUC_CASES)
def test_auc_plateau_synthetic(name):
    aucs, expected = AUC_CASES[name]
    assert auc_plateau_iteration(aucs, checks_at(len(aucs), 250)) == expected


@pytest.mark.parametrize("call, message", [
    (lambda: loss_stability_iteration([1.0, 1.0], [50]), "2 values but 1 iterations"),
    (lambda: loss_stability_iteration([1.0, 1.0], [100, 50]), "increase strictly"),
    (lambda: loss_stability_iteration([1.0], [50], lag=-1), "lag"),
    (lambda: loss_stability_iteration([1.0], [50], tolerance=float("inf")), "tolerance"),
    (lambda: auc_plateau_iteration([0.6], [50], patience=True), "patience"),
    (lambda: LossStability(start_iteration=-5), "start_iteration"),
])
def test_invalid_settings_rejected(call, message):
    with pytest.raises(InvalidInputError, match=message):
        call()


class _ReplayLoss(keras.Model):
    "Reports each batch's first value as its discriminator loss."

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, inputs):
        return self.dense(inputs)

    def train_step(self, data):
        return {"discriminator_loss": data[0, 0]}


class _AUCIntoLogs(keras.callbacks.Callback):
    "Puts a scripted AUC into the epoch logs, as the training loop's evaluation does."

    def __init__(self, aucs):
        super().__init__()
        self.aucs = list(aucs)

    def on_epoch_end(self, epoch, logs=None):
        if epoch % 2 == 1:  # evaluate every second epoch only
            logs["auc"] = self.aucs[epoch // 2]


def _fit(losses_per_iteration, callbacks, epochs):
    model = _ReplayLoss()
    model.compile()
    data = np.asarray(losses_per_iteration, np.float32)[:, None]
    model.fit(data, batch_size=1, epochs=epochs, steps_per_epoch=len(data) // epochs, callbacks=callbacks,
              verbose=0, shuffle=False)


def test_callbacks_in_fit_stop_and_record(tmp_path):
    losses, expected = LOSS_CASES["settles_late"]
    per_iteration = np.repeat(losses, 50)
    stability = LossStability(check_every=50, stop_training=True)
    _fit(per_iteration, [stability], epochs=1)
    assert stability.converged_iteration == expected == 850
    assert stability.iteration == 850  # fit stopped after the batch where the rule held
    assert stability.values[0] == pytest.approx(2.0)

    aucs, _ = AUC_CASES["improving_then_flat"]
    per_epoch_loss = np.repeat(np.linspace(2.0, 1.0, 22), 25)  # 22 epochs of 25 iterations
    plateau = AUCPlateau(stop_training=True)
    _fit(per_epoch_loss, [_AUCIntoLogs(aucs), plateau], epochs=22)
    assert plateau.iterations[:2] == [50, 100]  # AUC present every second epoch of 25 iterations
    assert plateau.converged_iteration == 500  # the tenth evaluation, as in the synthetic case
    assert plateau.iteration == 500

    path = tmp_path / "metrics.json"
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps({"convergence": {"loss": stability.to_dict(),
                                                         "auc": plateau.to_dict()}}))
    record = json.loads(path.read_text())["convergence"]
    assert record["loss"]["converged_iteration"] == 850
    assert record["auc"]["converged_iteration"] == 500
    resumed = LossStability.from_dict(record["loss"])
    assert resumed.iteration == 850
    assert resumed.values == stability.values
    assert AUCPlateau.from_dict(record["auc"]).values == plateau.values


def test_nan_loss_recorded_as_null():
    stability = LossStability()
    stability.update(50, float("nan"))
    stability.update(100, 1.0)
    record = json.loads(json.dumps(stability.to_dict(), allow_nan=False))
    assert record["values"] == [None, 1.0]
    assert math.isnan(LossStability.from_dict(record).values[0])

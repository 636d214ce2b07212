"""The reference training loop, written the way the study's code trains: the yardstick for bench_training.py.

It makes one `tf.function` call per batch, each batch drawn with NumPy on the host. Evaluation samples come from
`generator.predict` at Keras's default batch of 32. XGBoost is fitted at full size on the real and generated
muons at every evaluation and, for the guided GAN, at every importance refresh. The networks, optimisers and losses are
the library's: same layer sizes, Adam 2e-4 with beta_1 0.5 and beta_2 0.9. The classifier has the library's
settings too (100 trees of depth 3, `hist`). A speed difference therefore comes from how the work is organised.
"""

from __future__ import annotations

import numpy as np


def _classifier():
    import xgboost

    from muon_gan_nb.evaluation import CLASSIFIER_DEFAULTS
    return xgboost.XGBClassifier(**CLASSIFIER_DEFAULTS)


def full_size_fit(real: np.ndarray, generated: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
    "Fit XGBoost on half of real + generated, score the other half; return the AUC and gain importances."
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    features = np.vstack([real, generated])
    labels = np.r_[np.zeros(len(real)), np.ones(len(generated))]
    train_x, test_x, train_y, test_y = train_test_split(features, labels, test_size=0.5, random_state=seed,
                                                        stratify=labels)
    classifier = _classifier()
    classifier.fit(train_x, train_y)
    auc = roc_auc_score(test_y, classifier.predict_proba(test_x)[:, 1])
    gains = classifier.get_booster().get_score(importance_type="gain")
    importances = np.array([gains.get(f"f{index}", 0.0) for index in range(features.shape[1])])
    total = importances.sum()
    return float(auc), importances / total if total > 0 else np.full(features.shape[1], 1 / features.shape[1])


class ReferenceTrainer:
    "A GAN trained step by step from Python, as in the study's scripts; `model` is vanilla, wgan-gp or guided."

    def __init__(self, model: str, train_scaled: np.ndarray, heldout_physical: np.ndarray, scaler,
                 batch_size: int = 100, eval_size: int = 100_000, seed: int = 0, alpha: float = 1.5,
                 n_critic: int = 5, gradient_penalty_weight: float = 10.0):
        import keras
        import tensorflow as tf

        from muon_gan_nb.guided import noise_blocks
        from muon_gan_nb.models import build_discriminator, build_generator

        self.model, self.train_scaled, self.scaler = model, train_scaled, scaler
        self.heldout = heldout_physical[:eval_size]
        self.batch_size, self.eval_size, self.seed = batch_size, eval_size, seed
        self.rng = np.random.default_rng(seed)
        self.generator = build_generator(seed=seed)
        self.discriminator = build_discriminator(output_activation=None if model == "wgan-gp" else "sigmoid",
                                                 seed=seed + 1)
        self.generator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.9)
        self.discriminator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.9)
        noise_dim = int(self.generator.input_shape[-1])
        self.noise_dim = noise_dim
        # Guided (noise mode): each noise block is scaled by 1 + alpha * W of its feature.
        self.alpha = alpha
        self.blocks = noise_blocks(noise_dim)
        self.noise_scale = tf.Variable(tf.ones(noise_dim), trainable=False)
        self.n_critic, self.gradient_penalty_weight = n_critic, gradient_penalty_weight
        self.evaluations, self.refreshes = [], []

        cross_entropy = keras.losses.BinaryCrossentropy()
        generator, discriminator = self.generator, self.discriminator
        generator_optimizer, discriminator_optimizer = self.generator_optimizer, self.discriminator_optimizer
        noise_scale = self.noise_scale

        @tf.function
        def gan_step(real):
            noise = tf.random.normal((tf.shape(real)[0], noise_dim)) * noise_scale
            with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
                generated = generator(noise, training=True)
                real_scores = discriminator(real, training=True)
                generated_scores = discriminator(generated, training=True)
                generator_loss = cross_entropy(tf.ones_like(generated_scores), generated_scores)
                discriminator_loss = (cross_entropy(tf.ones_like(real_scores), real_scores)
                                      + cross_entropy(tf.zeros_like(generated_scores), generated_scores))
            generator_gradients = generator_tape.gradient(generator_loss, generator.trainable_variables)
            discriminator_gradients = discriminator_tape.gradient(discriminator_loss, discriminator.trainable_variables)
            generator_optimizer.apply_gradients(zip(generator_gradients, generator.trainable_variables))
            discriminator_optimizer.apply_gradients(zip(discriminator_gradients, discriminator.trainable_variables))
            return generator_loss, discriminator_loss

        @tf.function
        def critic_step(real):
            batch = tf.shape(real)[0]
            generated = generator(tf.random.normal((batch, noise_dim)), training=True)
            epsilon = tf.random.uniform((batch, 1))
            interpolates = epsilon * real + (1 - epsilon) * generated
            with tf.GradientTape() as tape:
                with tf.GradientTape() as penalty_tape:
                    penalty_tape.watch(interpolates)
                    interpolate_scores = discriminator(interpolates, training=True)
                gradients = penalty_tape.gradient(interpolate_scores, interpolates)
                norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=1) + 1e-10)
                penalty = tf.reduce_mean(tf.square(norms - 1.0))
                critic_loss = (tf.reduce_mean(discriminator(generated, training=True))
                               - tf.reduce_mean(discriminator(real, training=True))
                               + gradient_penalty_weight * penalty)
            critic_gradients = tape.gradient(critic_loss, discriminator.trainable_variables)
            discriminator_optimizer.apply_gradients(zip(critic_gradients, discriminator.trainable_variables))
            return critic_loss

        @tf.function
        def generator_step(batch):
            with tf.GradientTape() as tape:
                generated = generator(tf.random.normal((batch, noise_dim)), training=True)
                generator_loss = -tf.reduce_mean(discriminator(generated, training=True))
            gradients = tape.gradient(generator_loss, generator.trainable_variables)
            generator_optimizer.apply_gradients(zip(gradients, generator.trainable_variables))
            return generator_loss

        self._gan_step, self._critic_step, self._generator_step = gan_step, critic_step, generator_step

    def _batch(self) -> np.ndarray:
        return self.train_scaled[self.rng.integers(0, len(self.train_scaled), self.batch_size)]

    def step(self):
        "One training iteration: one generator update (and n_critic critic updates for WGAN-GP)."
        if self.model == "wgan-gp":
            for _ in range(self.n_critic):
                self._critic_step(self._batch())
            self._generator_step(self.batch_size)
        else:
            self._gan_step(self._batch())

    def _generate_physical(self) -> np.ndarray:
        noise = self.rng.standard_normal((self.eval_size, self.noise_dim)).astype(np.float32)
        noise *= self.noise_scale.numpy()
        return self.scaler.inverse_transform(self.generator.predict(noise, verbose=0))

    def evaluate(self, iteration: int):
        "Held-out AUC with a full-size fit on `eval_size` real + `eval_size` generated muons."
        auc, _ = full_size_fit(self.heldout, self._generate_physical(), self.seed + iteration)
        self.evaluations.append({"iteration": iteration, "auc": auc})

    def refresh_importances(self, iteration: int):
        "Guided: refit the full-size classifier and rescale the noise blocks by 1 + alpha * W."
        _, importances = full_size_fit(self.heldout, self._generate_physical(), self.seed + iteration)
        self.noise_scale.assign((1.0 + self.alpha * importances[self.blocks]).astype(np.float32))
        self.refreshes.append({"iteration": iteration, "weights": importances.tolist()})

    def train(self, iterations: int, eval_every: int | None = 250, refresh_every: int | None = 50):
        "Train for `iterations`, evaluating every `eval_every` and, when guided, refreshing every `refresh_every`."
        for iteration in range(1, iterations + 1):
            self.step()
            if self.model == "guided" and refresh_every and iteration % refresh_every == 0:
                self.refresh_importances(iteration)
            if eval_every and iteration % eval_every == 0:
                self.evaluate(iteration)

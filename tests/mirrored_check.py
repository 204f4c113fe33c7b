"""Meta-steps on 2 logical CPU replicas against 1 replica holding the same 2 instances.

Run by tests/test_distribute.py in its own process (the CPU must be split before TensorFlow starts).
Prints one JSON object: the first meta-gradient of both, the networks' weights after a few
meta-steps of both, and the weights of each replica.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from learning_to_learn import configs
from learning_to_learn import distribute
from learning_to_learn import meta
from learning_to_learn import seeds as seeds_lib

CLIP = 1e-2  # small enough to clip every step: replicas must clip by the global norm, not their own

strategy = distribute.make_strategy("mirrored", cpu_devices=2)
problem, config, _ = configs.get_config("quadratic")
tf.random.set_seed(0)
single_optimizer = meta.MetaOptimizer(**config)
with strategy.scope():
  mirrored_optimizer = meta.MetaOptimizer(**config)
for mirrored_variable, variable in zip(mirrored_optimizer.trainable_variables,
                                       single_optimizer.trainable_variables):
  mirrored_variable.assign(variable)

trainers = {
    "single": single_optimizer.meta_minimize(problem, 5, num_instances=2, clip_meta_gradient=CLIP,
                                             jit_compile=False),
    "mirrored": mirrored_optimizer.meta_minimize(problem, 5, num_instances=2, strategy=strategy,
                                                 clip_meta_gradient=CLIP, jit_compile=False),
}
out = {"replicas": strategy.num_replicas_in_sync, "clip": CLIP}
for name, trainer in trainers.items():
  trainer.reset(seeds_lib.make_seed(0))
  result, _, gradients = trainer._train_fn(trainer.states, seeds_lib.make_seed(1))  # pylint: disable=protected-access
  # Each replica holds its share of the meta-gradient; the meta-step applies their sum.
  out[f"{name}_gradient"] = [
      sum(g.numpy() for g in strategy.experimental_local_results(share)).ravel().tolist()
      if name == "mirrored" else share.numpy().ravel().tolist() for share in gradients]
  out[f"{name}_norm"] = float(trainer._local_copy(result).meta_gradient_norm)  # pylint: disable=protected-access
  for epoch in range(3):
    trainer.reset(seeds_lib.make_seed(epoch))
    losses = [float(trainer.train_unroll(seeds_lib.make_seed(epoch, u)).meta_loss)
              for u in range(2)]
  out[f"{name}_losses"] = losses
  out[f"{name}_weights"] = [v.numpy().ravel().tolist() for v in trainer.variables]
out["replica_weights"] = [[c.numpy().ravel().tolist() for c in strategy.experimental_local_results(v)]
                          for v in trainers["mirrored"].variables]
print(json.dumps(out))

"""Learning to learn by gradient descent by gradient descent, in TensorFlow 2 and Sonnet 2."""

from learning_to_learn import checkpoints
from learning_to_learn import datasets
from learning_to_learn import evaluation
from learning_to_learn import keras
from learning_to_learn import meta
from learning_to_learn import networks
from learning_to_learn import preprocess
from learning_to_learn import unroll

"""The LSTM cell's math as TensorFlow ops: the plain cell every learned rule runs.

`fused_lstm` builds the same step as one C++ op and times itself against this one, and `networks`
runs whichever is chosen; keeping the math here lets both import it without importing each other.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf


class LSTMState(NamedTuple):
  """One LSTM layer's state, [hidden_size, batch] each: feature-major, a column per batch entry."""
  hidden: tf.Tensor
  cell: tf.Tensor


def lstm_step(inputs, state, w_gates, b_gates, forget_bias=1.0):
  """One step of a standard LSTM with all four gates in one fused matmul, feature-major.

  gates = W^T [x; h] + b, split as (input i, candidate j, forget f, output o);
  c' = sigmoid(f + forget_bias) c + sigmoid(i) tanh(j);  h' = sigmoid(o) tanh(c').

  Batch entries are columns, not rows: with thousands of coordinates and a few dozen features, the
  stacking of [x; h], the gate split and their gradients then move contiguous rows, and XLA's CPU
  matmul runs over the long axis. The bias and the forget bias ride in the matmul as one more row of
  W against a row of ones, which saves a pass over the gates forward and a reduction over the batch
  backward. What each choice gained: docs/performance.md.
  The weights are the usual [input_size + hidden_size, 4 hidden_size]: only the state is transposed.

  Args:
    inputs: [input_size, batch].
    state: LSTMState of [hidden_size, batch] tensors.
    w_gates: [input_size + hidden_size, 4 hidden_size].
    b_gates: [4 hidden_size].
    forget_bias: added to the forget gate so a fresh LSTM remembers (Sonnet's default, 1.0).

  Returns:
    (hidden', LSTMState(hidden', cell')), hidden' of [hidden_size, batch].
  """
  hidden_size = b_gates.shape[0] // 4
  gate_shift = np.repeat(np.array([0.0, 0.0, forget_bias, 0.0], np.float32), hidden_size)
  weights = tf.concat([w_gates, (b_gates + gate_shift)[tf.newaxis]], axis=0)
  ones = tf.ones([1, tf.shape(inputs)[1]], inputs.dtype)
  stacked = tf.concat([inputs, state.hidden, ones], axis=0)  # [input + hidden + 1, batch]
  gates = tf.matmul(weights, stacked, transpose_a=True)
  i, j, f, o = tf.split(gates, 4, axis=0)  # each [hidden_size, batch]
  cell = tf.sigmoid(f) * state.cell + tf.sigmoid(i) * tf.tanh(j)
  hidden = tf.sigmoid(o) * tf.tanh(cell)
  return hidden, LSTMState(hidden, cell)

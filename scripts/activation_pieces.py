"""Fits the piecewise cubics that the fused op's bfloat16 mode uses for the gates' sigmoid and tanh.

Usage: python scripts/activation_pieces.py

Prints the C++ tables that learning_to_learn/fused_lstm.cc holds (kSigmoidPieces, kTanhPieces)
and each function's largest absolute error, evaluated in float32 as the op evaluates it. Each
function is fitted on [0, top) cut into 32 equal pieces, one cubic per piece in the piece's own
variable t in [0, 1), by least squares reweighted toward the largest residuals (close to minimax),
the first piece through the function's value at 0; negative arguments use the symmetries
sigmoid(-x) = 1 - sigmoid(x) and tanh(-x) = -tanh(x).
"""

import textwrap

import numpy as np

PIECES = 32
FUNCTIONS = {  # name -> (function, top of the fitted range, odd: f(-x) = -f(x), else 1 - f(x))
    "kSigmoidPieces": (lambda x: 1.0 / (1.0 + np.exp(-x)), 16.0, False),
    "kTanhPieces": (np.tanh, 8.0, True),
}


def fit(function, top, pieces=PIECES, samples=2001, rounds=30):
  """[pieces, 4] float32 coefficients, highest power first, of the cubic in t on each piece."""
  width = top / pieces
  coefficients = []
  for i in range(pieces):
    x = np.linspace(i * width, (i + 1) * width, samples)
    t = (x - i * width) / width
    y = function(x)
    # The first piece keeps the function's value at 0 exactly (tanh(0) = 0, sigmoid(0) = 1/2): its
    # cubic is fitted with its constant fixed, so a zero state gives a zero hidden output.
    origin = function(0.0) if i == 0 else None
    basis = np.stack([t ** 3, t ** 2, t] + ([] if i == 0 else [np.ones_like(t)]), axis=1)
    target = y - origin if i == 0 else y
    weights = np.ones_like(t)
    for _ in range(rounds):
      c = np.linalg.lstsq(basis * weights[:, None], target * weights, rcond=None)[0]
      residual = np.abs(basis @ c - target)
      weights = np.sqrt(residual / residual.max() + 1e-3)
    coefficients.append(np.append(c, origin) if i == 0 else c)
  return np.array(coefficients, np.float32)


def evaluate(coefficients, x, top, odd, dtype=np.float32):
  """The op's evaluation (in float32; float64 for a reference): |x| clamped below top, the piece,
  Horner in t, then the symmetry."""
  x = np.asarray(x, dtype)
  coefficients = coefficients.astype(dtype)
  a = np.minimum(np.abs(x), np.nextafter(dtype(top), dtype(0)))
  s = a * dtype(len(coefficients) / top)
  i = s.astype(np.int64)
  t = s - np.floor(s)
  y = coefficients[i, 0]
  for k in (1, 2, 3):
    y = y * t + coefficients[i, k]
  return np.where(x < 0, -y if odd else dtype(1) - y, y)


def _literal(value):
  """A C++ float literal that reads back as `value` exactly."""
  text = f"{value:.9g}"
  return text + ("f" if "." in text or "e" in text else ".0f")


def main():
  x = np.linspace(-24.0, 24.0, 960001).astype(np.float32)
  for name, (function, top, odd) in FUNCTIONS.items():
    c = fit(function, top)
    y = evaluate(c, x, top, odd)
    error = np.abs(y.astype(np.float64) - function(x.astype(np.float64))).max()
    print(f"// {name}: [0, {top:g}) in {PIECES} pieces; largest absolute error {error:.1e}")
    print(f"alignas(64) constexpr float {name}[4][{PIECES}] = {{")
    for k in range(4):
      print(textwrap.fill(", ".join(_literal(v) for v in c[:, k]), width=96,
                          initial_indent="    {", subsequent_indent="     ") + "},")
    print("};")


if __name__ == "__main__":
  main()

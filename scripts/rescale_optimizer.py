"""Writes a trained optimizer with another output scale: the same weights, each update × factor.

Usage: python scripts/rescale_optimizer.py SOURCE SCALE DESTINATION [ADAPTATION [normalize|signal
    [START]]]
  SOURCE: a shipped name or a train.py --save_path directory (its cw.npz);
  SCALE: the new output scale (the shipped `mnist` has 0.1);
  DESTINATION: a directory, created, that gets cw.npz;
  ADAPTATION: the rate of the online step-size adaptation (`step_size`; 0: a fixed scale);
    left out, SOURCE's own (none for the shipped `mnist`); RATE,BETA adapts it on the exponential
    average of the previous updates (`adaptation_averaging` BETA);
  normalize: each parameter tensor's update divided by its RMS, so SCALE is its RMS step
    (`step_size.normalize`); left out, SOURCE's own choice;
  signal: normalized, and each tensor's RMS step also × the RMS of Adam's normalized step on its
    gradients (`step_size.signal_ratio`);
  START: the adapted multiplier at the first step (default 1; below 1, a warm-up).

A start for fine-tuning on problems whose good step sizes are smaller or larger than those of the
problem the source was trained on (`train.py --init_path=DESTINATION`).
"""

import math
import os
import sys


def rescale(source, scale, destination, scale_adaptation=None, normalize_output=None,
            signal_scaled=None, initial_multiplier=None, adaptation_averaging=None):
  """Writes DESTINATION/cw.npz, SOURCE's network at output scale `scale` (its step adapted at
  rate `scale_adaptation`, 0 for none, None for SOURCE's own; its output normalized per tensor if
  `normalize_output`, scaled by its gradients' signal if `signal_scaled`, None for SOURCE's own);
  started at multiplier `initial_multiplier` and adapted on the average of its updates
  `adaptation_averaging`, None for SOURCE's own); returns its path."""
  # Imported here: a bad argument is refused before TensorFlow starts and talks.
  from learning_to_learn import networks
  from learning_to_learn import optimizer_files
  path = optimizer_files.single_net_file(source, "SOURCE")
  network = optimizer_files.load(path)
  options = dict(network.get_config(), scale=scale,
                 initializer=optimizer_files.read_weights(path))
  if scale_adaptation is not None:
    options["scale_adaptation"] = scale_adaptation
  if normalize_output is not None:
    options["normalize_output"] = normalize_output
  if signal_scaled is not None:
    options["signal_scaled"] = signal_scaled
  if initial_multiplier is not None:
    options["initial_multiplier"] = initial_multiplier
  if adaptation_averaging is not None:
    options["adaptation_averaging"] = adaptation_averaging
  rescaled = networks.build(type(network).__name__, options, source=path)
  os.makedirs(destination, exist_ok=True)
  return optimizer_files.save(rescaled, os.path.join(destination, optimizer_files.SINGLE_NET_FILE))


def main(argv):
  if len(argv) not in (4, 5, 6, 7):
    sys.exit(__doc__.strip().splitlines()[2])
  if len(argv) >= 6 and argv[5] not in ("normalize", "signal"):
    sys.exit(f"rescale_optimizer.py: error: {argv[5]!r} after ADAPTATION must be the word "
             "normalize or signal.")
  normalize = True if len(argv) >= 6 else None
  signal = True if len(argv) >= 6 and argv[5] == "signal" else None
  try:
    start = float(argv[6]) if len(argv) == 7 else None
  except ValueError:
    start = math.nan
  if start is not None and not (math.isfinite(start) and 1 / 32 <= start <= 32):
    sys.exit(f"rescale_optimizer.py: error: START={argv[6]} must be a number in [1/32, 32].")
  rate, comma, beta = argv[4].partition(",") if len(argv) >= 5 else ("", "", "")
  try:
    adaptation = float(rate) if len(argv) >= 5 else None
    averaging = float(beta) if comma else None
  except ValueError:
    adaptation = averaging = math.nan
  if adaptation is not None and not (math.isfinite(adaptation) and adaptation >= 0):
    sys.exit(f"rescale_optimizer.py: error: ADAPTATION={argv[4]} must be a number >= 0, or "
             "RATE,BETA with BETA in [0, 1).")
  if averaging is not None and not (0 <= averaging < 1):
    sys.exit(f"rescale_optimizer.py: error: ADAPTATION={argv[4]}: BETA must be in [0, 1).")
  try:
    scale = float(argv[2])
  except ValueError:
    scale = math.nan
  if not math.isfinite(scale) or scale <= 0:
    sys.exit(f"rescale_optimizer.py: error: SCALE={argv[2]} must be a positive number.")
  try:
    path = rescale(argv[1], scale, argv[3], adaptation, normalize, signal, start, averaging)
    print(f"Wrote {path}.")
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"rescale_optimizer.py: error: {str(e).splitlines()[0]}")


if __name__ == "__main__":
  main(sys.argv)

"""Files written whole or not at all: each to a partial file beside it, then renamed over the old.

A write that fails part-way (disk full, a file-size limit, permissions) then leaves the previous
file as it was, never a truncated one. `replace_all` does so for a set of files that belong
together (a comparison's table, summary, curves and plot): every one is written before any is
renamed, so that a failure leaves the old set whole rather than new files beside old ones. (The
renames come last and do not need space; a crash between two of them is the one window left.)
"""

import os


def partial_path(path):
  """Where `path` is written first: `name.partial.ext`, so that writers that add or read the
  extension (np.savez adds .npz, matplotlib reads .png) write exactly there."""
  stem, ext = os.path.splitext(path)
  return f"{stem}.partial{ext}"


def replace_all(writers, remove=()):
  """Writes each file of `writers` ({path: write(partial_path)}), then renames them all over.

  Args:
    writers: path -> a function that writes the file's new content to the path it is given.
    remove: paths of old files that the new set has no place for (e.g. a plot that could not be
      drawn), removed once the new files are in place so that none is left beside them.

  Raises:
    ValueError: a write failed (an OSError); the line names the file and says that the previous
      files are intact. Every partial file is removed and no file is replaced. Any other error
      propagates after the same clean-up.
  """
  partials = {}
  try:
    for path, write in writers.items():
      partials[path] = partial_path(path)
      write(partials[path])
  except BaseException as e:
    for partial in partials.values():
      if os.path.lexists(partial):
        os.remove(partial)
    if not isinstance(e, OSError):
      raise
    previous = [os.path.basename(p) for p in writers if os.path.exists(p)]
    kept = (f"the previous {', '.join(previous)} {'is' if len(previous) == 1 else 'are'} intact"
            if previous else "no file was replaced")
    raise ValueError(f"cannot write {path} ({e.strerror or e}); {kept}: free disk space or fix "
                     "permissions, then run the same command.") from None
  for path, partial in partials.items():
    os.replace(partial, path)
  for path in remove:
    if path not in writers and os.path.lexists(path):
      os.remove(path)


def replace(path, write):
  """`replace_all` for one file: `write(partial)`, then renamed over `path`."""
  replace_all({path: write})

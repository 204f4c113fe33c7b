"""Error text: the part of an exception's message that a one-line error quotes."""


def first_line(error):
  """An exception's message cut to its first line, for one-line errors that quote a cause."""
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__

"""errors.first_line: the part of a message a one-line error quotes, against messages written here."""

from learning_to_learn import errors


def test_first_line_is_the_message_up_to_its_first_newline():
  assert errors.first_line(ValueError("bad shape\nTraceback follows")) == "bad shape"
  assert errors.first_line(OSError("  disk full  \n")) == "disk full"


def test_a_long_line_is_cut_to_200_characters():
  assert errors.first_line(RuntimeError("x" * 300 + "\nmore")) == "x" * 200


def test_an_empty_message_gives_the_exceptions_name():
  assert errors.first_line(KeyError()) == "KeyError"
  assert errors.first_line(ValueError("   ")) == "ValueError"

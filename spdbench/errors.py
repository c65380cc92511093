"""The one error type the command line turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user or the environment: an unknown name, an out-of-range value,
    a missing or corrupt dataset or checkpoint. The message is one line meant for a person."""

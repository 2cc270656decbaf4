"""The one error type of the converter: a message for the user, exit status 2 on the CLI."""


class ConversionError(Exception):
    """The input cannot be converted; the message names the file and the problem."""

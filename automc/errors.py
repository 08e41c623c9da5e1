"""The one error type users see for bad input: the CLI prints it on one line and exits 2."""


class UserInputError(ValueError):
    """Bad input from the user: the message names the file or option, the field and the fix."""

"""Errors caused by the user's input: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input (file, config, option). The message names the file or option and the problem."""


class DataError(UserError):
    """A data file that is missing, corrupt, of the wrong shape or holding NaNs."""

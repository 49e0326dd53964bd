"""lth: Lottery Ticket Hypothesis experiments as reproducible pipelines."""

__version__ = "0.1.0"


class LthError(Exception):
    """An error meant for the user: bad params, a damaged artifact, data that fails checks."""

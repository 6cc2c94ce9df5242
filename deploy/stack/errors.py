"""The one error the local stack raises: what failed, and where to look."""


class StackError(RuntimeError):
    """A stack service could not be installed, started or reached."""

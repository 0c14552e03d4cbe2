"""Errors the stores raise, so nothing above them imports the database driver."""


class StoreError(Exception):
    """Base class of every error a store raises."""


class StoreUnavailable(StoreError):
    """PostgreSQL could not be reached or dropped the connection; retrying later may work."""


class InvalidData(StoreError):
    """PostgreSQL refused a value (say, a string jsonb cannot hold); retrying will not help."""


class SchemaMissing(StoreError):
    """The schema has not been applied: run `praxiom-progress migrate`."""


class NotFound(StoreError):
    """The row the caller named does not exist."""


class InvalidTransition(StoreError):
    """The task is not in a state that allows the change (say, cancelling a finished one)."""

"""The harness's own error types: each carries a message fit to show a user as-is."""


class HarnessError(Exception):
    """An error the CLI reports as one line and exit code 2, without a traceback."""


class SpecError(HarnessError):
    """An experiment spec file is malformed: the message names the file and the key path."""


class DataError(HarnessError):
    """A dataset is missing, malformed, or has nothing usable left."""


class TrackingError(HarnessError):
    """The MLflow tracking store cannot be reached or used."""

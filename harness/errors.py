"""The harness's own error types: each carries a message fit to show a user as-is."""


class HarnessError(Exception):
    """An error the CLI reports as one line and exit code 2, without a traceback."""

    def __init__(self, message: str = "") -> None:
        # One line whatever went into it: a YAML key or a file name may hold a line break.
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


class SpecError(HarnessError):
    """An experiment spec file is malformed: the message names the file and the key path."""


class DataError(HarnessError):
    """A dataset is missing, malformed, or has nothing usable left."""


class TrackingError(HarnessError):
    """The MLflow tracking store cannot be reached or used."""

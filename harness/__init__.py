"""fer-harness: an experiment-tracking benchmark harness for facial expression recognition."""

__version__ = "0.1.0"

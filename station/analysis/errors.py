"""Shared exception for the analysis layer.

Analysis functions raise AnalysisError (a ValueError) for input they cannot use.
"""


class AnalysisError(ValueError):
    """Input an analysis function cannot use."""

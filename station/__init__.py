"""The test station: engine, configuration, limits, results store, CLI.

Depends on `drivers` and `station.analysis`; sequences are loaded by name, and simulated benches
are started as separate processes, never imported.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("optical-test-station")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

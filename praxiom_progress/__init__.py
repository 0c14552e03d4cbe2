"""praxiom-progress: live progress for long-running background tasks.

Everything the server distribution installs lives under this one package, so an
application's own `cli`, `gateway` or `runner` modules never shadow ours.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("praxiom-progress")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]

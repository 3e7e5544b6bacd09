"""Quadracode-Ray core: configuration, envelopes, LLM providers, graphs, tools, persistence.

Nothing in this package imports Ray actors, the sandbox, or the Serve app: the layers above
depend on it, never the reverse.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("quadracode-ray")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

NAMESPACE = "quadracode"
"""The Ray namespace every named actor of the system lives in."""

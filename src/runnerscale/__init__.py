"""runnerscale: an autoscaler for GitHub Actions self-hosted runners.

The package is layered (see ``docs/architecture.md`` and the import-linter contracts in
``pyproject.toml``): ``github`` talks to GitHub, ``sim`` is a GitHub simulator that ships with
the product, and ``cli`` wires the parts together.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

"""The production side's view of GitHub: webhook deliveries and the REST API.

Nothing here may import :mod:`runnerscale.fakegithub` (an import-linter contract enforces it), so
the autoscaler talks to the real GitHub and the simulator through exactly the same code.
"""

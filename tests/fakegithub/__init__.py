"""Tests of the GitHub simulator (:mod:`runnerscale.fakegithub`)."""

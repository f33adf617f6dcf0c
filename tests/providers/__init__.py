"""Tests of the backends (:mod:`runnerscale.providers`), against real processes and services."""

"""Tests of the production GitHub layer (:mod:`runnerscale.github`)."""

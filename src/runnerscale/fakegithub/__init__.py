"""A GitHub simulator that ships with runnerscale.

It is faithful enough that the production client cannot tell it from GitHub for what an
autoscaler does: self-hosted runners and JIT configurations, workflow runs and jobs, App
installations, rate limits, conditional requests and ``workflow_job`` webhooks. It runs as an
HTTP server (``runnerscale fake-github``) or in-process on a virtual clock (the deterministic
simulation). ``docs/simulator.md`` says what it models and what it does not.

Layers: :mod:`.world` holds the state and rules (no HTTP, no sleeping), :mod:`.shapes` and
:mod:`.webhook_payloads` render GitHub's JSON, :mod:`.api` serves it over HTTP, :mod:`.server`
runs it, :mod:`.runner` is the stand-in for the official runner.
"""

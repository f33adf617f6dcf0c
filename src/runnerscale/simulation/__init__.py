"""The deterministic simulation: the daemon's controller replaying a trace on a virtual clock.

Like :mod:`runnerscale.daemon`, this package only wires implementations to the controller's
protocols: the in-process GitHub simulator (:mod:`.github`), a simulated backend
(:mod:`.backend`) and an event-driven clock (:mod:`.engine`).
"""

"""The deterministic simulation: the daemon's controller replaying a trace on a virtual clock.

Like :mod:`runnerscale.daemon`, this package only wires implementations to the controller's
protocols: the in-process GitHub simulator (:mod:`.github`, over
:class:`runnerscale.fakegithub.world.World`), a simulated backend (:mod:`.backend`, each
pool's model read from its blocks by :mod:`.pools`: an ec2 pool's markets and prices too) and
an event-driven clock (:mod:`.engine`); :mod:`.run` runs the policies side by side.

What goes in and comes out lives here too: workload traces (:mod:`.trace`, and :mod:`.export`
for ``runnerscale trace export``), the reference points (:mod:`.bounds`), the figures a run
measures (:mod:`.results`) and their tables and HTML report (:mod:`.report`).
"""

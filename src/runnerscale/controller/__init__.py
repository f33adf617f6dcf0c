"""The reconcile loops: observe GitHub and the backends, decide with the scaler, act.

They depend only on the protocols in :mod:`runnerscale.protocols`.
"""

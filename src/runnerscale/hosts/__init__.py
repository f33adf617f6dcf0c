"""``runnerscale hosts``: the SSH backend's nodes, checked and prepared from this machine.

``fleet`` says which nodes a configuration's ssh pools name (and how to log in to them),
``probe`` asks a node what it has and ``check`` judges it, ``bootstrap`` prepares a node in
steps that each decide before they act, ``scrape`` writes the Prometheus configuration for the
fleet, and ``show`` prints what they found. The connection to a node is the backend's own
(:mod:`runnerscale.providers.ssh.connection`), so what these commands see is what the daemon
will see.
"""

"""``runnerscale service``: the daemon as a systemd service (install, uninstall, status).

``layout`` says where the files go, ``plan`` what the unit must say for a config, ``unit`` and
``envfile`` write them as text, ``manager`` tells systemd (or lists what to run), and
``install`` puts the steps in order. See ``docs/deploy.md``.
"""

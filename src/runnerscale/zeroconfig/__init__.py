"""The zero-config start: ``runnerscale run --owner ORG | --repo OWNER/NAME --max-runners N``
on a single machine, without writing a config file first (issue 13).

Why it is built this way:

* **The config it runs is a config file's text.** The start renders the YAML of the
  equivalent configuration and loads it through the normal loader and host checks
  (:func:`runnerscale.config.load.check_text`): what it prints is what runs, byte for byte,
  so the user can save it and grow into it (``runnerscale run -c FILE``), and the two can
  never differ.
* **Secrets stay out of the text.** The token is referenced as ``${GH_TOKEN}`` or
  ``${GITHUB_TOKEN}`` (whichever it came from; ``gh auth token``'s goes into the loader's
  environment as ``GH_TOKEN``), never written, so the printed config holds no secret.
* **Deciding apart from doing.** :mod:`.decide` turns the flags and what was found on the host
  into a :class:`~.decide.Plan` (pure: the host comes in as a :class:`~.decide.Host`);
  :mod:`.render` writes a plan as YAML (pure); :mod:`.token` finds the token (the
  environment, then ``gh``); :mod:`.host` asks this machine (a Docker engine, the official
  runner's folder); :mod:`.start` runs them in order.
"""

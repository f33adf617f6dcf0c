"""The SSH backend: the hosts a team already owns, reached over SSH, as one pool."""

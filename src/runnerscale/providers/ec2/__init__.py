"""The EC2 backend: a fresh VM per job from a launch template, its one-job JIT config handed
over through an SSM ``SecureString`` parameter named by the instance id.

The pool's ``ec2:`` settings are :mod:`.settings` (no SDK), the hourly prices :mod:`.prices`,
the tags every party of the hand-off agrees on :mod:`.tags`. The provider and the registry's
``BACKEND`` come with the provider.
"""

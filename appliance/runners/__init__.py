"""Runner backends: what runs a job's steps, and where.

- ``registry``: every backend, its declaration (abilities, options); imports none of them;
- ``config``: runner configurations (one YAML file each), checked against the registry,
  and ``create_backend``, which imports a backend's module only when a configuration
  names it (so the web process never imports ``docker`` or opens a Docker socket);
- ``base``: the interface every backend implements, and what it is given (``StepRun``);
- one module per backend: ``docker``, ``local`` (with the pool in ``appliance.worker``),
  ``memory`` (tests).
"""

"""appliance: command-line tools as web services, one container per job."""

# pyproject.toml, the Helm chart and compose name the same version (tests/test_release.py)
__version__ = "0.2.0"

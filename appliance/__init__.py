"""appliance: command-line tools as web services, one container per job."""

__version__ = "0.1.0"

"""Every error the appliance raises on purpose.

    ApplianceError
    ├── ConfigError              a settings, service or runner file is wrong
    │   └── ConfigErrors         several ConfigErrors found in one pass
    ├── ValidationError          a submitted value is wrong (carries an error code)
    │   └── FormErrors           several ValidationErrors for one submission
    ├── CommandError             a command line cannot be built for valid values
    ├── StoreError               MongoDB answered with an error we did not expect
    │   └── StoreUnavailableError  MongoDB could not be reached in time
    └── RunnerError              a runner backend failed (the job ends in ERROR)
        └── RunnerUnavailableError  its engine or worker is unreachable (retried)
            └── FilesUnansweredError  the file system did not answer in time (retried)

Third-party exceptions (pymongo, yaml, docker, zmq) are translated into these at the
one module that imports the library.
"""

from __future__ import annotations

from collections.abc import Iterable


class ApplianceError(Exception):
    """Base of every error the appliance raises on purpose."""


class ConfigError(ApplianceError):
    """A configuration file (settings, service, runner) is wrong.

    ``source`` is the file, ``key`` the dotted path inside it; both end up in the message
    so that a person can find the line to fix.
    """

    def __init__(self, reason: str, *, source: str = "", key: str = "") -> None:
        self.reason = reason
        self.source = source
        self.key = key
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.source
        if self.key:
            where = f"{where}: {self.key}" if where else self.key
        return f"{where}: {self.reason}" if where else self.reason

    def at(self, key: str) -> ConfigError:
        """The same error, one level further out (``key`` is prefixed)."""
        inner = f"{key}.{self.key}" if self.key else key
        return ConfigError(self.reason, source=self.source, key=inner)

    def in_file(self, source: str) -> ConfigError:
        return ConfigError(self.reason, source=source, key=self.key)


class ConfigErrors(ConfigError):
    """Several configuration errors, reported together."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(e.describe() for e in self.errors))

    def describe(self) -> str:
        return "\n".join(e.describe() for e in getattr(self, "errors", []))


# The error codes of the previous system's API, kept so its clients understand them.
ERROR_CODES = (
    "required",
    "invalid",
    "min_value",
    "max_value",
    "min_length",
    "max_length",
    "media_type",
    "not_found",
    "condition",
    "unexpected",  # a value for no parameter of the service
    "file_id",  # a file parameter's value that is no id of an upload or a job's file
)


class ValidationError(ApplianceError):
    """One parameter's value is wrong."""

    def __init__(self, parameter: str, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        self.parameter = parameter
        self.code = code
        self.message = message
        super().__init__(f"{parameter}: {message} ({code})")

    def to_json(self) -> dict[str, str]:
        return {"parameter": self.parameter, "errorCode": self.code, "message": self.message}


class FormErrors(ApplianceError):
    """All the wrong values of one submission."""

    def __init__(self, errors: Iterable[ValidationError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    def to_json(self) -> dict[str, list[dict[str, str]]]:
        return {"errors": [e.to_json() for e in self.errors]}


class CommandError(ApplianceError):
    """A command line cannot be built (unset environment variable, clashing file names)."""


class StoreError(ApplianceError):
    """MongoDB answered with an error the store does not expect."""


class StoreUnavailableError(StoreError):
    """MongoDB could not be reached within the retry deadline."""


class RunnerError(ApplianceError):
    """A runner backend could not do what was asked."""


class RunnerUnavailableError(RunnerError):
    """The runner's engine or worker cannot be reached now; the job waits and retries."""


class FilesUnansweredError(RunnerUnavailableError):
    """A read or write of the jobs' file system did not end in time (a hung network file
    system): asked again later, as an unreachable runner is."""


class RunnerFaultError(RunnerUnavailableError):
    """A runner's ``submit`` raised what it does not translate (a bug, an unexpected OS
    error): the job is tried again as for an unreachable runner, then ends saying so."""

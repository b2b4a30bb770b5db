"""Everything configured: settings, services and runners, loaded and checked together."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from appliance.classifiers import classifier_warnings
from appliance.errors import ConfigError
from appliance.model import RunnerChoice, Service
from appliance.runners.config import RunnerConfig, load_runner_configs, unenforced
from appliance.servicecheck import ignored_files, service_idioms, service_mistakes
from appliance.servicefolder import load_services
from appliance.settings import Settings


@dataclass(frozen=True)
class Catalogue:
    services: dict[str, Service]
    runners: dict[str, RunnerConfig]
    errors: list[ConfigError] = field(default_factory=list)
    runner_errors: list[ConfigError] = field(default_factory=list)  # also in ``errors``
    warnings: list[ConfigError] = field(default_factory=list)  # the services still load
    # mistakes that show only when a job runs (appliance.servicecheck): the services still
    # load, but ``appliance check`` counts them as problems
    mistakes: list[ConfigError] = field(default_factory=list)


def cross_check(
    services: dict[str, Service], runners: dict[str, RunnerConfig]
) -> list[ConfigError]:
    """Problems between files: a service naming a runner that is not configured, needing an
    image its runner needs but it does not name, or asking for limits its runner's backend
    cannot enforce. Asks each backend's declaration, never its name."""
    errors = []
    for service in services.values():
        for choice in service.runners.values():
            config = runners.get(choice.runner)
            key = f"execution.runners.{choice.id}" if service.format == "slivka" else "runner"
            if config is None:
                known = ", ".join(sorted(runners)) or "none"
                errors.append(
                    ConfigError(
                        f"runner {choice.runner!r} is not configured (configured: {known})",
                        source=service.source,
                        key=key,
                    )
                )
                continue
            abilities = config.abilities
            if abilities.needs_image and not service.image:
                errors.append(
                    ConfigError(
                        f"runner {choice.runner!r} runs containers: the service needs 'image'",
                        source=service.source,
                        key="image",
                    )
                )
            for limit in unenforced(service.resources, abilities):
                errors.append(
                    ConfigError(
                        f"runner {choice.runner!r} ({config.backend} backend) cannot enforce "
                        "this limit",
                        source=service.source,
                        key=f"resources.{limit}",
                    )
                )
    return errors


def pairs_setting(
    settings: Settings, key: str, what: str
) -> tuple[dict[str, str], list[ConfigError]]:
    """A setting of ``NAME=RUNNER`` pairs as a mapping (``what`` names the left side)."""
    mapping: dict[str, str] = {}
    errors = []
    for pair in getattr(settings, key):
        name, sep, runner = pair.partition("=")
        if not sep or not name.strip() or not runner.strip():
            errors.append(ConfigError(f"expected {what}=RUNNER, got {pair!r}",
                                      source=settings.source, key=key))  # fmt: skip
            continue
        mapping[name.strip()] = runner.strip()
    return mapping, errors


def previous_runner_map(settings: Settings) -> tuple[dict[str, str], list[ConfigError]]:
    """The ``previous_runners`` setting as class -> runner (``*``: any class)."""
    return pairs_setting(settings, "previous_runners", "CLASS")


def alias_runners(service: Service, aliases: dict[str, str]) -> Service:
    """The service's runners with the ``runner_aliases`` setting applied."""
    if not aliases or not any(c.runner in aliases for c in service.runners.values()):
        return service
    runners = {rid: replace(choice, runner=aliases.get(choice.runner, choice.runner))
               for rid, choice in service.runners.items()}  # fmt: skip
    return replace(service, runners=runners)


def map_previous_runners(service: Service, mapping: dict[str, str]) -> Service:
    """A previous-system file's runner classes, on the runners the site maps them to: a
    file beside a Dockerfile (it has an image) on ``Dockerfile``'s runner if that is
    given, else its class's, else ``*``'s."""
    if not mapping or service.format != "slivka":
        return service
    imaged = mapping.get("Dockerfile") if service.image is not None else None

    def runner(choice: RunnerChoice) -> str:
        return imaged or mapping.get(choice.previous, mapping.get("*", choice.runner))

    runners = {rid: replace(choice, runner=runner(choice)) if choice.previous else choice
               for rid, choice in service.runners.items()}  # fmt: skip
    return replace(service, runners=runners)


def load_catalogue(settings: Settings) -> Catalogue:
    """Services and runners from the folders the settings name; bad files are reported, not fatal."""
    services, service_errors = load_services(settings.services_dir)
    mapping, mapping_errors = previous_runner_map(settings)
    service_errors += mapping_errors
    aliases, alias_errors = pairs_setting(settings, "runner_aliases", "NAME")
    service_errors += alias_errors
    services = {sid: alias_runners(map_previous_runners(s, mapping), aliases)
                for sid, s in services.items()}  # fmt: skip
    runners, runner_errors = load_runner_configs(settings.runners_dir)
    errors = [*service_errors, *runner_errors, *cross_check(services, runners)]
    broken = {e.source for e in errors}
    usable = {sid: s for sid, s in services.items() if s.source not in broken}
    mistakes = [m for s in usable.values() for m in service_mistakes(s)]
    mistakes += ignored_files(settings.services_dir)
    warnings = classifier_warnings(usable) + [w for s in usable.values() for w in service_idioms(s)]
    return Catalogue(usable, runners, errors, runner_errors, warnings, mistakes)

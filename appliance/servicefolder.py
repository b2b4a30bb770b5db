"""Service files in folders: finding them, their ids, and the image of a file in the
previous system's form (which names none) from the folder it is in."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from appliance.errors import ConfigError, ConfigErrors
from appliance.model import Service
from appliance.servicefile import SUFFIX, parse_service
from appliance.yamlfile import read_mapping


def service_id_of(path: Path) -> str:
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem


IMAGE_FILE = "image"  # beside a previous-system file and its Dockerfile: the image's name


def folder_image(path: Path) -> str | None:
    """The image a service file without ``image:`` (the previous system's form) runs in:
    with a Dockerfile beside it, the name in a side file ``image`` if there is one, else
    ``appliance/<folder>:latest``; None without a Dockerfile."""
    folder = path.parent
    if not (folder / "Dockerfile").is_file():
        return None
    side = folder / IMAGE_FILE
    if side.is_file():
        for line in side.read_text().splitlines():
            if line.split("#", 1)[0].strip():
                return line.split("#", 1)[0].strip()
    return f"appliance/{folder.name.lower()}:latest"


def load_service_file(path: Path) -> Service:
    """One service file; any problem is a ConfigError naming the file and the key."""
    data = read_mapping(path)
    try:
        service = parse_service(service_id_of(path), data, str(path))
    except ConfigError as exc:
        raise exc.in_file(str(path)) from None
    if service.format == "slivka" and service.image is None:  # the file itself is left as it is
        return dataclasses.replace(service, image=folder_image(path))
    return service


def load_services(directory: Path) -> tuple[dict[str, Service], list[ConfigError]]:
    """Every ``*.service.yaml`` below ``directory`` (not in hidden folders): the good ones,
    and an error for each bad one."""
    services: dict[str, Service] = {}
    errors: list[ConfigError] = []
    if not directory.is_dir():
        return services, [ConfigError("services folder not found", source=str(directory))]
    for path in sorted(directory.rglob(f"*{SUFFIX}")):
        if any(part.startswith(".") for part in path.relative_to(directory).parts[:-1]):
            continue  # hidden folders: a Kubernetes ConfigMap's ..<time> copy, .git
        try:
            service = load_service_file(path)
        except ConfigErrors as many:
            errors.extend(many.errors)
            continue
        except ConfigError as exc:
            errors.append(exc)
            continue
        if service.id in services:
            errors.append(
                ConfigError(
                    f"service id {service.id!r} is already defined in {services[service.id].source}",
                    source=str(path),
                )
            )
            continue
        services[service.id] = service
    return services, errors

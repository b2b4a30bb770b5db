"""Classifiers that Jalview understands: EDAM-style paths with double colons.

Jalview, the alignment desktop program, fills its web-services menus from a server's
service list by the services' ``Operation`` classifiers: it splits each at ``::``, takes
those that begin ``Operation :: Analysis``, and files the service by the path's last
element. Those it knows are below (the paths the previous system's bioinformatics
deployment writes); a service with none of them appears in no menu.
"""

from __future__ import annotations

import re

from appliance.errors import ConfigError
from appliance.model import Service

SEPARATOR = re.compile(r"\s*::\s*")

# The full paths, as the previous system's deployment writes them; Jalview reads the last
# element (case does not matter).
JALVIEW_OPERATIONS = {
    "multiple sequence alignment":
        "Operation :: Analysis :: Sequence analysis :: Sequence alignment :: Multiple sequence alignment",
    "pairwise sequence alignment":
        "Operation :: Analysis :: Sequence analysis :: Sequence alignment :: Pairwise sequence alignment",
    "sequence alignment analysis (conservation)":
        "Operation :: Analysis :: Sequence analysis :: Sequence alignment analysis :: "
        "Sequence alignment analysis (conservation)",
    "protein sequence analysis":
        "Operation :: Analysis :: Sequence analysis :: Protein sequence analysis",
    "protein disorder prediction":
        "Operation :: Analysis :: Sequence analysis :: Protein sequence analysis :: "
        "Protein feature detection :: Protein disorder prediction",
    "protein secondary structure prediction":
        "Operation :: Analysis :: Sequence analysis :: Protein sequence analysis :: "
        "Protein secondary structure prediction",
    "rna secondary structure prediction":
        "Operation :: Analysis :: Structure analysis :: Nucleic acid structure analysis :: "
        "RNA secondary structure analysis :: RNA secondary structure prediction",
}  # fmt: skip


def jalview_operation(classifier: str) -> str | None:
    """The operation Jalview files a service under for this classifier, or None."""
    path = SEPARATOR.split(classifier.strip())
    if len(path) < 3 or path[0].lower() != "operation" or path[1].lower() != "analysis":
        return None
    leaf = path[-1].lower()
    return leaf if leaf in JALVIEW_OPERATIONS else None


def classifier_warnings(services: dict[str, Service]) -> list[ConfigError]:
    """A warning for each ``Operation`` classifier that Jalview would not understand."""
    warnings = []
    for service in services.values():
        for index, classifier in enumerate(service.classifiers):
            if not classifier.strip().lower().startswith("operation"):
                continue
            if jalview_operation(classifier) is None:
                hint = ("write the path with double colons (::)" if "::" not in classifier
                        else "use one of the paths in docs/services.md")  # fmt: skip
                warnings.append(ConfigError(
                    f"{classifier!r} is not an operation Jalview knows: {hint}",
                    source=service.source, key=f"classifiers[{index}]"))  # fmt: skip
    return warnings

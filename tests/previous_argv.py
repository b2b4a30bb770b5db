"""The previous system's own command lines: run by *its* Python (``$APPLIANCE_TEST_SLIVKA/
bin/python``), never imported by the appliance's tests.

Reads ``{"file": PATH, "id": SERVICE_ID, "cases": [[[KEY, VALUE], ...], ...]}`` as JSON on
stdin and prints, for each case, the argv the previous system's code makes (its YAML
loader, its form fields' validation and ``to_arg``, its runner's ``build_args``), or its
validation errors. Files are not looked up in a database: a file parameter's value is
written ``FILE:<parameter>`` (the appliance's side writes its staged path the same way).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml
from slivka.conf.loaders import ServiceConfig, _deserialize
from slivka.scheduler.runners.runner import Runner
from slivka.server.forms.fields import FileField
from slivka.server.forms.form import FormLoader
from slivka.utils import ConfigYamlLoader
from werkzeug.datastructures import MultiDict


def _file_value(self: Any, value: Any) -> Any:  # no database: the value names the parameter
    return None if value in (None, "") else value


def _file_arg(self: Any, value: Any) -> str | None:
    return None if value is None else f"FILE:{self.id}"


FileField.run_validation = _file_value
FileField.to_arg = _file_arg


def main() -> None:
    request = json.load(sys.stdin)
    with open(request["file"]) as stream:
        data = yaml.load(stream, ConfigYamlLoader)
    data["id"] = request["id"]
    service = _deserialize(ServiceConfig, data)
    form_class = FormLoader().read_config(service)
    runner = Runner(None, None, service.command, service.args, {}, service.outputs, service.env)
    answers = []
    for case in request["cases"]:
        form = form_class(MultiDict([tuple(pair) for pair in case]), MultiDict())
        if not form.is_valid():
            answers.append({"errors": sorted(form.errors)})
            continue
        inputs = {f.id: f.to_arg(form.cleaned_data[f.id]) for f in form.fields.values()}
        answers.append({"argv": [*runner.command, *runner.build_args(inputs)]})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()

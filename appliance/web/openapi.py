"""The OpenAPI 3 description of the API, as the server really answers."""

from __future__ import annotations

from functools import cache
from typing import Any

from appliance import __version__
from appliance.errors import ERROR_CODES
from appliance.states import JobState

Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Json:
    return _json(_ref("Error"), description)


def _path_param(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


TIME = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", "description": "UTC"}
NULLABLE_TIME = {**TIME, "nullable": True}
TIME_FILTER = r"^(>=|<=|>|<)?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$"
FORM = {
    "multipart/form-data": {"schema": {"type": "object", "additionalProperties": True}},
    "application/x-www-form-urlencoded": {
        "schema": {"type": "object", "additionalProperties": True}
    },
}


def notice(description: str) -> dict[str, Any]:
    """How a webhook or an e-mail went, as a job shows it."""
    return {"type": "object", "description": description, "properties": {
        "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "attempts": {"type": "integer"}, "deliveredAt": TIME, "error": {"type": "string"}}}  # fmt: skip


SCHEMAS: Json = {
    "Error": {
        "type": "object",
        "required": ["error", "message", "status"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "status": {"type": "integer"},
        },
    },
    "ValidationErrors": {
        "type": "object",
        "required": ["errors"],
        "properties": {
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "errorCode", "message"],
                    "properties": {
                        "parameter": {"type": "string"},
                        "errorCode": {"type": "string", "enum": list(ERROR_CODES)},
                        "message": {"type": "string"},
                    },
                },
            }
        },
    },
    "Version": {
        "type": "object",
        "required": ["slivkaVersion", "APIVersion"],
        "properties": {
            "slivkaVersion": {"type": "string"},
            "APIVersion": {"type": "string"},
            "applianceVersion": {"type": "string"},
        },
    },
    "Parameter": {
        "type": "object",
        "required": ["type", "id", "name", "description", "required", "array"],
        "properties": {
            "type": {
                "type": "string",
                "enum": ["integer", "decimal", "text", "flag", "choice", "file"],
            },
            "id": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "required": {"type": "boolean"},
            "array": {"type": "boolean"},
            "default": {"nullable": True},
            "choices": {"type": "array", "items": {"type": "string"}},
            "mediaType": {"type": "string", "nullable": True},
        },
    },
    "Service": {
        "type": "object",
        "required": ["@url", "id", "name", "parameters", "presets", "status"],
        "properties": {
            "@url": {"type": "string"},
            "id": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "author": {"type": "string"},
            "version": {"type": "string"},
            "license": {"type": "string"},
            "classifiers": {"type": "array", "items": {"type": "string"}},
            "parameters": {"type": "array", "items": _ref("Parameter")},
            "presets": {"type": "array", "items": {}},
            "status": {
                "type": "object",
                "required": ["status", "errorMessage", "timestamp"],
                "properties": {
                    "status": {
                        "type": "string",
                        "enum": ["OK", "WARNING", "DOWN", "UNDEFINED", "UNKNOWN"],
                    },
                    "errorMessage": {"type": "string"},
                    "timestamp": TIME,
                },
            },
        },
    },
    "Job": {
        "type": "object",
        "required": [
            "@url",
            "id",
            "service",
            "parameters",
            "submissionTime",
            "completionTime",
            "finished",
            "status",
        ],
        "properties": {
            "@url": {"type": "string"},
            "id": {"type": "string"},
            "service": {"type": "string"},
            "parameters": {"type": "object", "additionalProperties": True},
            "submissionTime": TIME,
            "completionTime": NULLABLE_TIME,
            "startTime": NULLABLE_TIME,
            "finished": {"type": "boolean"},
            "status": {"type": "string", "enum": [s.value for s in JobState]},
            "error": {"type": "string", "nullable": True},
            "exitCode": {"type": "integer", "nullable": True},
            "waiting": {
                "type": "object",
                "description": "why a job that is not running waits (docs/api.md)",
                "properties": {
                    "reason": {"type": "string"},
                    "message": {"type": "string"},
                    "since": TIME,
                },
            },
            "reusedFrom": {
                "type": "string",
                "description": "the earlier identical job whose results answered this one",
            },
            "webhook": notice("how the webhook the job named went (the form field _webhook)"),
            "email": notice("how the e-mail the job named went (the form field _email)"),
        },
    },
    "JobList": {
        "type": "object",
        "required": ["totalCount", "jobs"],
        "properties": {
            "totalCount": {"type": "integer"},
            "jobs": {"type": "array", "items": _ref("Job")},
        },
    },
    "File": {
        "type": "object",
        "required": ["@url", "@content", "id", "jobId", "path", "label", "mediaType"],
        "properties": {
            "@url": {"type": "string"},
            "@content": {"type": "string", "description": "where the proxy serves the bytes"},
            "id": {"type": "string"},
            "jobId": {"type": "string", "nullable": True},
            "path": {"type": "string"},
            "label": {"type": "string"},
            "mediaType": {"type": "string"},
        },
    },
    "FileList": {
        "type": "object",
        "required": ["files"],
        "properties": {"files": {"type": "array", "items": _ref("File")}},
    },
}

SERVICE_ID = _path_param("service_id", "a service id")
JOB_ID = _path_param("job_id", "a job id")
FILE_ID = _path_param("file_id", "an uploaded file's id")
BAD = _error("malformed request")
UNAVAILABLE = _error("the database is unavailable")


def _list_parameters() -> list[Json]:
    def query(name: str, schema: Json, description: str) -> Json:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": description,
        }

    many = {"type": "array", "items": {"type": "string"}}
    return [
        query(
            "limit",
            {"type": "integer", "minimum": 0, "maximum": 10**12},
            "at most this many jobs (default 100; more than 1000 gives 1000; above 10^12: 400)",
        ),
        query(
            "skip",
            {"type": "integer", "minimum": 0, "maximum": 10**12},
            "skip this many of the newest (above 10^12: 400)",
        ),
        query(
            "status",
            {"type": "array", "items": {"type": "string", "enum": [s.value for s in JobState]}},
            "only jobs in these states",
        ),
        query("service", many, "only jobs of these services"),
        query("id", many, "only these jobs"),
        query(
            "submissionTime",
            {"type": "array", "items": {"type": "string", "pattern": TIME_FILTER}},
            "[>=|>|<=|<]YYYY-MM-DDTHH:MM:SS (UTC)",
        ),
    ]


@cache
def openapi_document() -> Json:
    jobs_list: Json = {
        "summary": "List jobs, newest first",
        "description": "Lists of everyone's jobs are the operator's: they need the operator's "
        "bearer token unless the site sets public_job_lists (a job's id is what lets anyone "
        "see that job).",
        "parameters": _list_parameters(),
        "responses": {
            "200": _json(_ref("JobList"), "jobs"),
            "400": BAD,
            "401": _error("the operator's token is needed"),
            "403": _error("not the operator's token, or lists are not open here"),
            "503": UNAVAILABLE,
        },
    }
    job_get = {
        "summary": "Show a job",
        "responses": {
            "200": _json(_ref("Job"), "the job"),
            "404": _error("no such job"),
            "503": UNAVAILABLE,
        },
    }
    job_delete = {
        "summary": "Cancel a job",
        "responses": {
            "204": {"description": "cancellation requested"},
            "404": _error("no such job"),
            "503": UNAVAILABLE,
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "appliance API (Slivka REST API 1.1)", "version": __version__},
        "servers": [{"url": "/api"}, {"url": "/api/v1.1"}],
        "paths": {
            "/version": {
                "get": {
                    "summary": "Server and API version",
                    "responses": {"200": _json(_ref("Version"), "versions")},
                }
            },
            "/stats": {
                "get": {
                    "summary": "Jobs submitted per month and service",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["usageStatictics"],
                                "properties": {
                                    "usageStatictics": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["month", "service", "count"],
                                            "properties": {
                                                "month": {"type": "string"},
                                                "service": {"type": "string"},
                                                "count": {"type": "integer"},
                                            },
                                        },
                                    }
                                },
                            },
                            "statistics (the key is spelt as the previous system spells it)",
                        ),
                        "503": UNAVAILABLE,
                    },
                }
            },
            "/services": {
                "get": {
                    "summary": "List services",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["services"],
                                "properties": {
                                    "services": {"type": "array", "items": _ref("Service")}
                                },
                            },
                            "services",
                        ),
                        "503": UNAVAILABLE,
                    },
                }
            },
            "/services/{service_id}": {
                "get": {
                    "summary": "Show a service",
                    "parameters": [SERVICE_ID],
                    "responses": {
                        "200": _json(_ref("Service"), "the service"),
                        "404": _error("no such service"),
                        "503": UNAVAILABLE,
                    },
                }
            },
            "/services/{service_id}/jobs": {
                "post": {
                    "summary": "Submit a job",
                    "parameters": [SERVICE_ID],
                    "requestBody": {"required": False, "content": FORM},
                    "responses": {
                        "202": {
                            **_json(_ref("Job"), "accepted"),
                            "headers": {"Location": {"schema": {"type": "string"}}},
                        },
                        "400": BAD,
                        "404": _error("no such service"),
                        "413": _error("too large, or too many files"),
                        "415": _error("not a form"),
                        "422": _json(_ref("ValidationErrors"), "invalid values"),
                        "503": UNAVAILABLE,
                    },
                },
                "get": {
                    **jobs_list,
                    "summary": "List a service's jobs",
                    "parameters": [SERVICE_ID, *_list_parameters()],
                    "responses": {**jobs_list["responses"], "404": _error("no such service")},
                },
            },
            "/services/{service_id}/jobs/{job_id}": {
                "get": {**job_get, "parameters": [SERVICE_ID, JOB_ID]},
                "delete": {**job_delete, "parameters": [SERVICE_ID, JOB_ID]},
            },
            "/jobs": {"get": jobs_list},
            "/jobs/{job_id}": {
                "get": {**job_get, "parameters": [JOB_ID]},
                "delete": {**job_delete, "parameters": [JOB_ID]},
            },
            "/jobs/{job_id}/files": {
                "get": {
                    "summary": "List a finished job's files",
                    "parameters": [JOB_ID],
                    "responses": {
                        "200": _json(_ref("FileList"), "the files"),
                        "404": _error("no such job"),
                        "503": UNAVAILABLE,
                    },
                }
            },
            "/jobs/{job_id}/files/{path}": {
                "get": {
                    "summary": "Show one of a job's files",
                    "parameters": [JOB_ID, _path_param("path", "the file's path in the job")],
                    "responses": {
                        "200": _json(_ref("File"), "the file"),
                        "404": _error("no such job or file"),
                        "503": UNAVAILABLE,
                    },
                }
            },
            "/files": {
                "post": {
                    "summary": "Upload a file (multipart part 'file')",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {"file": {"type": "string", "format": "binary"}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            **_json(_ref("File"), "stored"),
                            "headers": {"Location": {"schema": {"type": "string"}}},
                        },
                        "400": BAD,
                        "413": _error("too large"),
                        "415": _error("not multipart"),
                        "503": UNAVAILABLE,
                    },
                }
            },
            "/files/{file_id}": {
                "get": {
                    "summary": "Show an uploaded file",
                    "parameters": [FILE_ID],
                    "responses": {
                        "200": _json(_ref("File"), "the file"),
                        "404": _error("no such file"),
                        "503": UNAVAILABLE,
                    },
                },
                "put": {
                    "summary": "Relabel an uploaded file (fields label, mediaType)",
                    "parameters": [FILE_ID],
                    "requestBody": {"required": False, "content": FORM},
                    "responses": {
                        "200": _json(_ref("File"), "the file"),
                        "400": BAD,
                        "404": _error("no such file"),
                        "413": _error("too large, or too many files"),
                        "415": _error("not a form"),
                        "503": UNAVAILABLE,
                    },
                },
            },
        },
        "components": {"schemas": SCHEMAS},
    }

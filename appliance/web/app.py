"""The Starlette application, built by a factory from a settings object."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from appliance.catalogue import load_catalogue
from appliance.filerefs import StoreFileLookup
from appliance.messaging import WakeSender, wake_keys
from appliance.pages import views as pages
from appliance.planning import Planner
from appliance.settings import Settings
from appliance.store import Store
from appliance.store.formats import StoreFormatError
from appliance.submission import planning_environment
from appliance.tes.setup import tes_state
from appliance.web import files, jobs, meta, origins, tes
from appliance.web.errors import HANDLERS
from appliance.web.requests_log import RequestIds
from appliance.web.state import WebState

log = logging.getLogger(__name__)


Endpoint = Callable[[Request], Awaitable[Response]]


def route(path: str, **handlers: Endpoint) -> Route:
    """One route per path, dispatching on the method, so a 405 lists every allowed method."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, endpoint, methods=list(handlers))


def api_routes() -> list[BaseRoute]:
    return [
        route("/", GET=meta.docs_page),
        route("/reference", GET=meta.docs_page),  # the previous system's name for the page
        route("/version", GET=meta.version),
        route("/stats", GET=meta.stats),
        route("/openapi.json", GET=meta.openapi_json),
        route("/openapi.yaml", GET=meta.openapi_yaml),
        route("/services", GET=meta.list_services),
        route("/services/{service_id}", GET=meta.show_service),
        route("/services/{service_id}/jobs", GET=jobs.list_jobs, POST=jobs.submit_job),
        route("/services/{service_id}/jobs/{job_id}", GET=jobs.show_job, DELETE=jobs.cancel_job),
        route("/jobs", GET=jobs.list_jobs),
        route("/jobs/{job_id}", GET=jobs.show_job, DELETE=jobs.cancel_job),
        route("/jobs/{job_id}/files", GET=jobs.job_files),
        route("/jobs/{job_id}/files/{path:path}", GET=jobs.job_file),
        route("/files", POST=files.upload_file),
        route("/files/{file_id}", GET=files.show_file, PUT=files.update_file),
    ]


def tes_routes() -> list[BaseRoute]:
    return [
        route("/service-info", GET=tes.service_info),
        route("/tasks", GET=tes.list_tasks, POST=tes.create_task),
        route("/tasks/{task}", GET=tes.get_task, POST=tes.cancel_task),  # POST: "{id}:cancel"
    ]


def page_routes() -> list[BaseRoute]:
    """The web pages for people (appliance.pages); the proxy passes these paths too."""
    return [
        route("/", GET=pages.home),
        route("/my-jobs", GET=pages.my_jobs),
        route("/services/{service_id}", GET=pages.service_form, POST=pages.submit),
        route("/jobs/{job_id}", GET=pages.job_page),
        route("/jobs/{job_id}/outputs", GET=pages.job_outputs),
        route("/jobs/{job_id}/tail", GET=pages.job_tail),
        route("/jobs/{job_id}/cancel", POST=pages.cancel_job),
    ]


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        catalogue = load_catalogue(settings)
        for error in catalogue.errors:
            log.error("%s", error.describe())
        for mistake in catalogue.mistakes:  # it loads, but its jobs would go wrong
            log.warning("%s (appliance check)", mistake.describe())
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        store = Store(
            settings.mongodb_uri,
            settings.mongodb_database,
            retry_seconds=3,
            timeout_ms=int(settings.database_timeout * 1000),
        )
        waker = WakeSender(settings.scheduler_address, keys=wake_keys(settings))
        environment = planning_environment(catalogue, os.environ)
        app.state.appliance = WebState(
            settings,
            catalogue,
            store,
            waker,
            StoreFileLookup(store, settings.uploads_dir, settings.jobs_dir),
            Planner(catalogue.runners, environment),
            tes_state(settings, catalogue),
        )
        try:
            try:
                log.info("%s", await store.check_format())
            except StoreFormatError:
                raise  # records of a newer appliance: never served by this one
            except Exception as exc:  # the database may come later; the scheduler checks too
                log.warning("could not check the stored records' format yet: %s", exc)
            try:
                await store.ensure_indexes()
                await store.publish_environment(environment)  # the service tests' too
            except Exception as exc:  # the database may come later; /readyz tells
                log.warning("could not create indexes yet: %s", exc)
            yield
        finally:
            waker.close()
            await store.close()

    routes: list[BaseRoute] = [
        route("/healthz", GET=meta.healthz),
        route("/readyz", GET=meta.readyz),
        route("/metrics", GET=meta.metrics),
        route("/_internal/served", GET=jobs.served),  # the proxy's only: see proxyconf
        Mount("/ga4gh/tes/v1", routes=tes_routes()),
        Mount("/api/v1.1", routes=api_routes()),
        Mount("/api", routes=api_routes()),
        *page_routes(),
    ]
    middleware = [Middleware(RequestIds, access_log=settings.access_log),
                  *origins.middleware(settings.allowed_origins)]  # fmt: skip
    return Starlette(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan,
                     middleware=middleware)  # fmt: skip

"""The Starlette application, built by a factory from a settings object."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from appliance.catalogue import load_catalogue
from appliance.filerefs import StoreFileLookup
from appliance.messaging import WakeSender
from appliance.settings import Settings
from appliance.store import Store
from appliance.web import files, jobs, meta
from appliance.web.errors import HANDLERS
from appliance.web.state import WebState

log = logging.getLogger(__name__)


def api_routes() -> list[BaseRoute]:
    return [
        Route("/", meta.docs_page, methods=["GET"]),
        Route("/version", meta.version, methods=["GET"]),
        Route("/openapi.json", meta.openapi_json, methods=["GET"]),
        Route("/openapi.yaml", meta.openapi_yaml, methods=["GET"]),
        Route("/services", meta.list_services, methods=["GET"]),
        Route("/services/{service_id}", meta.show_service, methods=["GET"]),
        Route("/services/{service_id}/jobs", jobs.submit_job, methods=["POST"]),
        Route("/services/{service_id}/jobs", jobs.list_jobs, methods=["GET"]),
        Route("/services/{service_id}/jobs/{job_id}", jobs.show_job, methods=["GET"]),
        Route("/services/{service_id}/jobs/{job_id}", jobs.cancel_job, methods=["DELETE"]),
        Route("/jobs", jobs.list_jobs, methods=["GET"]),
        Route("/jobs/{job_id}", jobs.show_job, methods=["GET"]),
        Route("/jobs/{job_id}", jobs.cancel_job, methods=["DELETE"]),
        Route("/jobs/{job_id}/files", jobs.job_files, methods=["GET"]),
        Route("/jobs/{job_id}/files/{path:path}", jobs.job_file, methods=["GET"]),
        Route("/files", files.upload_file, methods=["POST"]),
        Route("/files/{file_id}", files.show_file, methods=["GET"]),
        Route("/files/{file_id}", files.update_file, methods=["PUT"]),
    ]


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        catalogue = load_catalogue(settings)
        for error in catalogue.errors:
            log.error("%s", error.describe())
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.mongodb_uri, settings.mongodb_database, retry_seconds=3)
        waker = WakeSender(settings.scheduler_address)
        app.state.appliance = WebState(
            settings,
            catalogue,
            store,
            waker,
            StoreFileLookup(store, settings.uploads_dir, settings.jobs_dir),
        )
        try:
            try:
                await store.ensure_indexes()
            except Exception as exc:  # the database may come later; /readyz tells
                log.warning("could not create indexes yet: %s", exc)
            yield
        finally:
            waker.close()
            await store.close()

    routes: list[BaseRoute] = [
        Route("/healthz", meta.healthz, methods=["GET"]),
        Route("/readyz", meta.readyz, methods=["GET"]),
        Mount("/api/v1.1", routes=api_routes()),
        Mount("/api", routes=api_routes()),
    ]
    return Starlette(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan)

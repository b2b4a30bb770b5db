"""What the web app holds while it runs, opened and closed in its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from appliance.catalogue import Catalogue
from appliance.filerefs import StoreFileLookup
from appliance.jobrecord import JobRecord
from appliance.messaging import WakeSender
from appliance.model import Service
from appliance.planning import Planner
from appliance.reusing import Answers
from appliance.settings import Settings
from appliance.store import Store
from appliance.tes.setup import TesState
from appliance.volumes import Volumes
from appliance.web.errors import ApiError


@dataclass
class WebState:
    settings: Settings
    catalogue: Catalogue
    store: Store
    waker: WakeSender
    lookup: StoreFileLookup
    planner: Planner
    tes: TesState | None = None
    answers: Answers | None = None  # reuse at submission (appliance.reusing)

    def __post_init__(self) -> None:
        if self.answers is None:
            self.answers = Answers(self.store, Volumes.local(self.settings))

    async def wake(self, job: JobRecord) -> None:
        """A new job's wake-up to every scheduler (a hint: it is claimable already)."""
        await self.waker.notify("submitted", str(job["_id"]), runner=str(job.get("runner")))

    def service(self, service_id: str) -> Service:
        service = self.catalogue.services.get(service_id)
        if service is None:
            raise ApiError(404, f"no service {service_id!r}")
        return service


def state_of(request: Request) -> WebState:
    state: WebState = request.app.state.appliance
    return state

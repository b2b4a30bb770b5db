"""``appliance.web.asgi:app`` for ASGI servers started with a module path (hypercorn workers).

The real application is built from settings when the server starts it (its lifespan),
not when this module is imported.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from appliance.settings import load_settings


class LazyApp:
    def __init__(self) -> None:
        self.app: object | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            from appliance.web.app import create_app

            self.app = create_app(load_settings())
        await self.app(scope, receive, send)  # type: ignore[operator]


app = LazyApp()

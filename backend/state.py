"""The typed state the lifespan hands to every request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from starlette.requests import Request

from backend.admission import Gate
from backend.engine_clients import EngineClient
from backend.metrics import Metrics
from backend.settings import Settings

if TYPE_CHECKING:
    from backend.health import Readiness

__all__ = ["BackendState", "backend_state"]


@dataclass(frozen=True, slots=True)
class BackendState:
    """What endpoints share: settings, the engine client, gate, metrics, readiness."""

    settings: Settings
    client: EngineClient
    gate: Gate
    metrics: Metrics
    readiness: Readiness


def backend_state(request: Request) -> BackendState:
    """Return the state the lifespan yielded, for ``request``."""
    return cast(BackendState, request.state.backend)

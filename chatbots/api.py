"""The console API of this app: an agent's chosen availability in one of their workspaces.

Session-authenticated (CSRF-checked), as the rest of the console API; mounted under /api/console/."""

from __future__ import annotations

from typing import Any

import redis
from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja import Path, Router, Schema
from ninja.security import django_auth
from pydantic import Field

from chatbots.availability import membership_set_availability
from chatbots.presence import effective_status, present_user_ids
from pivra.api_schema import ApiSchema, error_responses
from pivra.inputs import MAX_ID

router = Router(tags=["console"], auth=django_auth)
ERRORS = error_responses()


class AvailabilityIn(ApiSchema):
    # Checked by the service (400 invalid_availability), so the refusal names the allowed values.
    availability: str = Field(max_length=20, description="online, away or offline")


class AvailabilityOut(Schema):
    workspace: int
    availability: str = Field(description="What the member chose: online, away or offline.")
    status: str | None = Field(
        description="Their effective status (offline without an open console); null when it is unknown "
        "(Redis out of reach)."
    )


@router.put(
    "/workspaces/{workspace_id}/availability",
    response={200: AvailabilityOut, **ERRORS},
    summary="Set your availability in a workspace (online, away, offline)",
)
def set_availability(
    request: HttpRequest, payload: AvailabilityIn, workspace_id: int = Path(..., ge=1, le=MAX_ID)
) -> dict[str, Any]:
    user: User = request.auth  # type: ignore[attr-defined]
    membership = membership_set_availability(user=user, workspace_id=workspace_id, availability=payload.availability)
    try:
        present: bool | None = user.pk in present_user_ids(workspace_id=workspace_id)
    except redis.RedisError:  # out of reach: the choice is stored, the live status is unknown
        present = None
    status = None if present is None else effective_status(chosen=membership.availability, present=present)
    return {"workspace": workspace_id, "availability": membership.availability, "status": status}

"""Reads scoped to what a user may see."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet
from django.http import HttpRequest

from chatbots.models import Chatbot, Membership

SESSION_WORKSPACE_KEY = "pivra_workspace_id"


def memberships_for_user(*, user: User | AnonymousUser) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("workspace").order_by("workspace__name")


def membership_for_request(*, request: HttpRequest) -> Membership | None:
    """The membership of the workspace the user is working in (chosen in the switcher, else the first)."""
    memberships = memberships_for_user(user=request.user)
    chosen = request.session.get(SESSION_WORKSPACE_KEY)
    if chosen is not None:
        membership = memberships.filter(workspace_id=chosen).first()
        if membership is not None:
            return membership
    return memberships.first()


def chatbots_for_workspace(*, workspace_id: int) -> QuerySet[Chatbot]:
    return Chatbot.objects.filter(workspace_id=workspace_id).order_by("name")

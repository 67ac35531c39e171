"""The agent's own console settings: their profile page (the console language)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _

from accounts.forms import AgentLanguageForm
from accounts.languages import agent_language, agent_language_set
from chatbots.selectors import membership_for_request


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    """Profile → Language: "Browser default" or one of settings.LANGUAGES, for every workspace the agent is in."""
    # The sidebar of a workspace when the agent has one; the page itself works without.
    membership = membership_for_request(request=request)
    if membership is not None:
        request.membership = membership  # type: ignore[attr-defined]
    form = AgentLanguageForm(initial={"language": agent_language(user=request.user)})
    if request.method == "POST":
        form = AgentLanguageForm(data=request.POST)
        if form.is_valid():
            language = form.cleaned_data["language"] or ""
            try:
                agent_language_set(user=request.user, language=language)
            except ValidationError as exc:
                form.add_error("language", exc)
            else:
                # Said in the language the next page will speak (the chosen one, else the browser's).
                with translation.override(language or translation.get_language_from_request(request)):
                    messages.success(request, _("Your language is saved."))
                return redirect("dashboard:profile")
    return render(request, "console/profile.html", {"nav": "profile", "form": form})

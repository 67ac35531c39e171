"""Console forms: they parse input; the services decide what is valid."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from actions.events import EVENT_INFO, EventType
from actions.models import Action, url_mask
from chatbots.models import Chatbot


class ActionForm(forms.Form):
    chatbot = forms.ModelChoiceField(queryset=Chatbot.objects.none(), empty_label=None, label=_("Chatbot"))
    name = forms.CharField(max_length=100, label=_("Name"))
    kind = forms.ChoiceField(choices=Action.Kind.choices, widget=forms.RadioSelect, label=_("Do this"))
    events = forms.MultipleChoiceField(
        choices=[(e.value, EVENT_INFO[e][0]) for e in EventType],
        widget=forms.CheckboxSelectMultiple,
        label=_("When"),
    )
    url = forms.CharField(max_length=2000, required=False, label=_("URL"))
    recipients = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), label=_("Recipients"))

    def __init__(self, *args: Any, chatbots: QuerySet[Chatbot], action: Action | None = None, **kwargs: Any) -> None:
        if action is not None:
            kwargs.setdefault(
                "initial",
                {
                    "chatbot": action.chatbot_id,
                    "name": action.name,
                    "kind": action.kind,
                    "events": action.events,
                    # A webhook or Slack URL is a credential: never sent back to the browser (empty keeps it).
                    "url": "",
                    "recipients": "\n".join(action.recipients),
                },
            )
        super().__init__(*args, **kwargs)
        self.action = action
        self.url_saved = url_mask(action.url) if action is not None and action.kind != Action.Kind.EMAIL else ""
        self.fields["chatbot"].queryset = chatbots  # type: ignore[attr-defined]
        if action is not None:
            # The kind and chatbot define the action; changing them means a new action.
            self.fields["chatbot"].disabled = True
            self.fields["kind"].disabled = True
        else:
            self.fields["kind"].initial = Action.Kind.WEBHOOK
            self.fields["events"].initial = [EventType.CONVERSATION_ESCALATED.value]

    def clean_url(self) -> str:
        url: str = (self.cleaned_data.get("url") or "").strip()
        if not url and self.url_saved and self.action is not None:
            return self.action.url  # left empty: keep the saved URL
        return url

    def event_rows(self) -> list[dict[str, Any]]:
        chosen = set(self["events"].value() or [])
        return [
            {"value": e.value, "label": EVENT_INFO[e][0], "help": EVENT_INFO[e][1], "checked": e.value in chosen}
            for e in EventType
        ]

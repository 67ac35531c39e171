"""Project-level pages: the demo website that embeds the demo bot."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from chatbots.models import Chatbot
from chatbots.snippet import embed_snippet


def index(request: HttpRequest) -> HttpResponse:
    return redirect("dashboard:home")


def demo(request: HttpRequest) -> HttpResponse:
    """A sample customer website; the widget is embedded exactly as a customer would embed it."""
    chatbot = Chatbot.objects.filter(name="Demo bot", workspace__slug="demo").first()
    # Served by Pivra itself, so the loader comes from whichever address this page was opened at.
    snippet = embed_snippet(chatbot, base_url=f"{request.scheme}://{request.get_host()}") if chatbot else None
    return render(request, "demo/index.html", {"chatbot": chatbot, "snippet": snippet})

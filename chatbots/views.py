"""Console pages owned by this app: the workspace overview, the switcher and Chatbot → Settings."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from chatbots.access import request_membership, workspace_required
from chatbots.features import workspace_effective_plan, workspace_has_feature
from chatbots.forms import (
    GeneralSettingsForm,
    HandoffSettingsForm,
    KnowledgeEntryForm,
    LanguageSettingsForm,
    TextVariantsForm,
    language_choices,
)
from chatbots.handoff_options import chatbot_update_handoff_options
from chatbots.languages import chatbot_text_variants_set
from chatbots.models import Chatbot, KnowledgeEntry
from chatbots.plans import Feature
from chatbots.presence import workspace_roster
from chatbots.selectors import SESSION_WORKSPACE_KEY, chatbots_for_workspace, memberships_for_user
from chatbots.services import (
    chatbot_update_general,
    chatbot_update_handoff_settings,
    chatbot_update_languages,
    knowledge_entry_delete,
    knowledge_entry_save,
)
from chatbots.snippet import embed_snippet
from pivra.errors import DomainError
from pivra.inputs import MAX_ID, parse_int


@workspace_required
def home(request: HttpRequest) -> HttpResponse:
    workspace = request_membership(request).workspace
    context = {
        "plan": workspace_effective_plan(workspace=workspace),
        "subscription": getattr(workspace, "subscription", None),
        "chatbots": chatbots_for_workspace(workspace_id=workspace.pk).prefetch_related("knowledge_entries"),
        "members": workspace.memberships.select_related("user").order_by("role", "user__username"),
        "roster": workspace_roster(workspace_id=workspace.pk),  # status, live chats and capacity per member
        "can_manage": request_membership(request).can_manage,
        "nav": "home",
    }
    return render(request, "console/home.html", context)


@require_POST
@workspace_required
def switch_workspace(request: HttpRequest) -> HttpResponse:
    wanted = parse_int(request.POST.get("workspace"), min_value=1, max_value=MAX_ID)
    if wanted is not None and memberships_for_user(user=request.user).filter(workspace_id=wanted).exists():
        request.session[SESSION_WORKSPACE_KEY] = wanted
    return redirect("dashboard:home")


def _chatbot(request: HttpRequest, chatbot_id: str | None) -> Chatbot:
    bots = chatbots_for_workspace(workspace_id=request_membership(request).workspace_id)
    pk = parse_int(chatbot_id, min_value=1, max_value=MAX_ID)
    chatbot = bots.filter(pk=pk).first() if pk is not None else bots.first()
    if chatbot is None:
        raise Http404(_("No chatbot in this workspace."))
    return chatbot


def _settings_url(chatbot: Chatbot, anchor: str = "", *, variant: str = "") -> str:
    query = f"&variant={variant}" if variant else ""
    return f"{reverse('dashboard:chatbot-settings')}?chatbot={chatbot.pk}{query}{anchor}"


def _variant_languages(chatbot: Chatbot) -> list[dict[str, object]]:
    """The languages an owner may write variants for (all but the default), each saying whether it has one."""
    variants = chatbot.text_variants if isinstance(chatbot.text_variants, dict) else {}
    return [
        {"code": code, "name": name, "has_texts": bool(variants.get(code))}
        for code, name in language_choices()
        if code != chatbot.default_language
    ]


def _variant_language(request: HttpRequest, chatbot: Chatbot, languages: list[dict[str, object]]) -> tuple[str, str]:
    """The language whose texts the page shows (?variant= or the posted one), and an error for a bad one."""
    wanted = request.POST.get("variant") if request.method == "POST" else request.GET.get("variant")
    codes = [str(lang["code"]) for lang in languages]
    if not wanted:
        return codes[0] if codes else "", ""
    if wanted in codes:
        return wanted, ""
    if wanted == chatbot.default_language:
        return (codes[0] if codes else ""), _(
            "The default language uses the texts above; choose another language for a variant."
        )
    return (codes[0] if codes else ""), _("Choose one of the languages offered.")


def _save_handoff(request: HttpRequest, chatbot: Chatbot, form: HandoffSettingsForm) -> bool:
    if not form.is_valid():
        return False
    try:
        with transaction.atomic():  # one section, saved whole or not at all
            chatbot_update_handoff_settings(
                chatbot=chatbot,
                enabled=form.cleaned_data["enabled"],
                keywords=form.keyword_list(),
                waiting_message=form.cleaned_data["waiting_message"],
                timeout_seconds=form.cleaned_data["timeout_seconds"],
                busy_message=form.cleaned_data["busy_message"],
            )
            chatbot_update_handoff_options(chatbot=chatbot, options=form.options())
    except DomainError as exc:
        form.add_error(None, exc.detail)
        return False
    messages.success(request, _("Human handoff settings saved."))
    return True


def _save_general(request: HttpRequest, chatbot: Chatbot, form: GeneralSettingsForm) -> bool:
    if not form.is_valid():
        return False
    data = form.cleaned_data
    try:
        chatbot_update_general(
            chatbot=chatbot,
            name=data["name"],
            greeting=data["greeting"],
            accent_color=data["accent_color"],
            allowed_origins=form.origin_list(),
            ai_provider=data["ai_provider"],
            llm_base_url=data["llm_base_url"] or "",
            llm_model=data["llm_model"],
            llm_api_key=form.key_change(),
            fallback_message=data["fallback_message"],
        )
    except DomainError as exc:
        form.add_error(None, exc.detail)
        return False
    messages.success(request, _("Settings saved."))
    return True


def _save_languages(request: HttpRequest, chatbot: Chatbot, form: LanguageSettingsForm) -> bool:
    if not form.is_valid():
        return False
    try:
        chatbot_update_languages(
            chatbot=chatbot,
            language=form.cleaned_data["language"] or "",
            default_language=form.cleaned_data["default_language"],
        )
    except DomainError as exc:
        form.add_error(None, exc.detail)
        return False
    messages.success(request, _("Language settings saved."))
    return True


def _save_variants(request: HttpRequest, chatbot: Chatbot, language: str, form: TextVariantsForm) -> bool:
    if not form.is_valid():
        return False
    try:
        chatbot_text_variants_set(chatbot=chatbot, language=language, texts=form.texts(), keywords=form.keyword_list())
    except DomainError as exc:
        form.add_error(None, exc.detail)
        return False
    messages.success(request, _("Texts in this language saved."))
    return True


@workspace_required
def chatbot_settings(request: HttpRequest) -> HttpResponse:
    """Chatbot → Settings → General, with the Human Handoff and Language sections and the knowledge entries."""
    membership = request_membership(request)
    chatbot = _chatbot(request, request.GET.get("chatbot") or request.POST.get("chatbot"))
    general = GeneralSettingsForm.for_chatbot(chatbot)
    handoff = HandoffSettingsForm.for_chatbot(chatbot)
    languages = LanguageSettingsForm.for_chatbot(chatbot)
    variant_languages = _variant_languages(chatbot)
    variant, variant_error = _variant_language(request, chatbot, variant_languages)
    variants = TextVariantsForm.for_chatbot(chatbot, variant)
    if request.method == "POST":
        if not membership.can_manage:
            messages.error(request, _("Only workspace owners and admins can change settings."))
            return redirect(_settings_url(chatbot))
        section = request.POST.get("section")
        if section == "handoff":
            handoff = HandoffSettingsForm.for_chatbot(chatbot, data=request.POST)
            if _save_handoff(request, chatbot, handoff):
                return redirect(_settings_url(chatbot))
        elif section == "general":
            general = GeneralSettingsForm.for_chatbot(chatbot, data=request.POST)
            if _save_general(request, chatbot, general):
                return redirect(_settings_url(chatbot))
        elif section == "languages":
            languages = LanguageSettingsForm.for_chatbot(chatbot, data=request.POST)
            if _save_languages(request, chatbot, languages):
                return redirect(_settings_url(chatbot, "#languages"))
        elif section == "variants":
            # The posted code goes to the service as it came: it refuses the default language and unknown codes.
            posted = str(request.POST.get("variant") or "")[:20]
            variants = TextVariantsForm.for_chatbot(chatbot, variant, data=request.POST)
            if _save_variants(request, chatbot, posted, variants):
                return redirect(_settings_url(chatbot, "#variants", variant=posted))
            variant_error = ""  # the form carries the error
    workspace = membership.workspace
    context = {
        "nav": "settings",
        "chatbot": chatbot,
        "chatbots": chatbots_for_workspace(workspace_id=workspace.pk),
        "general": general,
        "handoff": handoff,
        "languages": languages,
        "variants": variants,
        "variant": variant,
        "variant_error": variant_error,
        "variant_languages": variant_languages,
        "variants_saved": any(lang["has_texts"] for lang in variant_languages),
        "variant_name": next((lang["name"] for lang in variant_languages if lang["code"] == variant), ""),
        "handoff_allowed": workspace_has_feature(workspace=workspace, feature=Feature.HANDOFF),
        "plan": workspace_effective_plan(workspace=workspace),
        "can_manage": membership.can_manage,
        "snippet": embed_snippet(chatbot),
        "entries": chatbot.knowledge_entries.order_by("question"),
        "entry_form": KnowledgeEntryForm(),
    }
    return render(request, "console/chatbot_settings.html", context)


@require_POST
@workspace_required
def knowledge_save(request: HttpRequest) -> HttpResponse:
    chatbot = _chatbot(request, request.POST.get("chatbot"))
    if not request_membership(request).can_manage:
        messages.error(request, _("Only workspace owners and admins can edit knowledge."))
        return redirect(_settings_url(chatbot, "#knowledge"))
    entry_id = parse_int(request.POST.get("entry"), min_value=1, max_value=MAX_ID)
    entry = KnowledgeEntry.objects.filter(chatbot=chatbot, pk=entry_id).first() if entry_id is not None else None
    form = KnowledgeEntryForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(f"{field}: {' '.join(str(e) for e in errors)}" for field, errors in form.errors.items())
        messages.error(request, _("The entry was not saved — %(problems)s") % {"problems": problems})
        return redirect(_settings_url(chatbot, "#knowledge"))
    try:
        knowledge_entry_save(
            chatbot=chatbot,
            question=form.cleaned_data["question"],
            answer=form.cleaned_data["answer"],
            is_active=form.cleaned_data["is_active"],
            entry=entry,
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("Knowledge entry saved."))
    return redirect(_settings_url(chatbot, "#knowledge"))


@require_POST
@workspace_required
def knowledge_delete(request: HttpRequest, entry_id: int) -> HttpResponse:
    chatbot = _chatbot(request, request.POST.get("chatbot"))
    entry = KnowledgeEntry.objects.filter(chatbot=chatbot, pk=entry_id).first()
    if entry is None:
        raise Http404(_("No such knowledge entry."))
    if not request_membership(request).can_manage:
        messages.error(request, _("Only workspace owners and admins can edit knowledge."))
    else:
        knowledge_entry_delete(entry=entry)
        messages.success(request, _("Knowledge entry deleted."))
    return redirect(_settings_url(chatbot, "#knowledge"))

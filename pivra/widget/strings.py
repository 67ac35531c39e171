"""The widget's visitor-facing words (issue 17): the one source of every text the chat frame and the
launcher show. The frame view sends them, translated into the negotiated language, in its config
(``strings``); the widget's JavaScript holds no English of its own.

Placeholders are the widget's ``{name}`` braces (filled by ``t()`` / ``tn()`` in config.js), kept
as they are in every translation. A plural entry sends every plural form of the language, with
``plural_map`` telling the widget which form each ``Intl.PluralRules`` category takes.
"""

from __future__ import annotations

import functools

from django.utils import translation
from django.utils.translation import gettext_noop


def ngettext_lazy(singular: str, plural: str) -> tuple[str, str]:
    """Marks a singular/plural pair for ``makemessages`` (xgettext extracts ``ngettext_lazy:1,2``);
    ``widget_strings`` reads every form of the language from the catalogue."""
    return (singular, plural)


# fmt: off
STRINGS: dict[str, str] = {
    # Header and status line.
    "assistant": gettext_noop("Assistant"),  # the chatbot's name when it has none
    "statusAi": gettext_noop("AI assistant"),
    "statusPending": gettext_noop("Connecting you to the team"),
    "statusBusy": gettext_noop("Team unavailable right now"),
    "statusClosed": gettext_noop("Conversation closed"),
    "statusActiveNoName": gettext_noop("Connected to the team"),
    "liveBadge": gettext_noop("● Live Agent"),
    # Translators: the widget's status line while a person is live, e.g. "Alice from the team".
    "agentFromTeam": gettext_noop("{agent} from the team"),
    "teamMember": gettext_noop("Team member"),
    "you": gettext_noop("You"),
    # Translators: read by screen readers before a message: "You:", "Alice:".
    "speaker": gettext_noop("{name}:"),
    "conversationLabel": gettext_noop("Conversation"),
    "closeChat": gettext_noop("Close chat"),
    # The launcher on the customer's page.
    "openChat": gettext_noop("Open chat"),
    "frameTitle": gettext_noop("Chat"),
    # Talk to a human and the keyword offer.
    "talkToHuman": gettext_noop("Talk to a human"),
    "offerQuestion": gettext_noop("Would you like to speak with a team member?"),
    "offerYes": gettext_noop("Yes, connect me"),
    "offerNo": gettext_noop("No thanks"),
    # Waiting for a person.
    "waitingTitle": gettext_noop("Waiting for a team member…"),
    "waitingDefault": gettext_noop("Connecting you with the team now…"),
    "transferTitle": gettext_noop("Transferring you to {agent}…"),
    "transferText": gettext_noop("They'll be with you in a moment."),
    "queueNext": gettext_noop("You are next in line"),
    "queuePosition": gettext_noop("You are number {n} in line"),
    # Translators: the place in line, then the usual wait: "You are number 3 in line · usually under 2 minutes".
    "queueLine": gettext_noop("{position} · {wait}"),
    "waitUnderOne": gettext_noop("usually under 1 minute"),
    "waitOverHour": gettext_noop("usually over an hour"),
    "waitFew": gettext_noop("usually a few minutes"),
    # Team busy and the phone form.
    "busyDefault": gettext_noop("Our team is currently busy. Leave your mobile number and we'll get back to you."),
    "offlineDefault": gettext_noop("We're not online right now. Leave your mobile number and we'll get back to you."),
    "phoneLabel": gettext_noop("Mobile number"),
    "phoneSubmit": gettext_noop("Send"),
    "phoneSending": gettext_noop("Sending…"),
    "phoneRequired": gettext_noop("Please enter your mobile number."),
    "phoneInvalid": gettext_noop("Please enter a valid mobile number."),
    "phoneThanks": gettext_noop("Thanks — we'll contact you at {phone}"),
    "continueAi": gettext_noop("Continue with AI"),
    "continueAiTitle": gettext_noop("Continue chatting with AI"),
    # Resolved, the survey and the transcript.
    "resolved": gettext_noop("Conversation resolved ✓"),
    "resolvedNote": gettext_noop("This conversation is closed. Start a new one to keep chatting."),
    "startNew": gettext_noop("Start new conversation"),
    "endChat": gettext_noop("End chat"),
    "ratingQuestion": gettext_noop("How did we do?"),
    "ratingGood": gettext_noop("Good"),
    "ratingBad": gettext_noop("Bad"),
    "ratingCommentLabel": gettext_noop("Anything to add? (optional)"),
    "ratingCommentPlaceholder": gettext_noop("Tell us more…"),
    "ratingSend": gettext_noop("Send feedback"),
    "ratingThanks": gettext_noop("Thanks for your feedback!"),
    "transcriptAsk": gettext_noop("Email me the transcript"),
    "transcriptLabel": gettext_noop("Your email address"),
    "transcriptSend": gettext_noop("Send"),
    "transcriptRequired": gettext_noop("Please enter your email address."),
    "transcriptSent": gettext_noop("Transcript queued for {email}. It should arrive in a few minutes."),
    # The composer and its notices.
    "closedPlaceholder": gettext_noop("This conversation is closed"),
    "placeholder": gettext_noop("Write a message…"),
    "messageLabel": gettext_noop("Message"),
    "send": gettext_noop("Send"),
    "sending": gettext_noop("Sending…"),
    "notSent": gettext_noop("Not sent"),
    # Translators: a file that could not be sent, then why: "Not sent — This file is too large (maximum 10 MB)."
    "notSentReason": gettext_noop("Not sent — {reason}"),
    "reconnecting": gettext_noop("Reconnecting…"),
    "connecting": gettext_noop("Connecting…"),
    # Translators: read by screen readers while someone types; {name} is a person's or the chatbot's name.
    "typing": gettext_noop("{name} is typing"),
    # Translators: shown under the messages while someone types.
    "typingVisible": gettext_noop("{name} is typing…"),
    "previewNotice": gettext_noop("The team can see what you type before you send it."),
    # Translators: a countdown in seconds ({n}); keep "s" (seconds) short.
    "rateLimited": gettext_noop("You're sending messages too fast. Try again in {n} s."),  # noqa: RUF001 (no break before "s")
    "handoffUnavailable": gettext_noop("A team member isn't available right now."),
    "genericError": gettext_noop("Something went wrong. Please try again."),
    "sessionLost": gettext_noop("We couldn't reconnect to the chat. Please reload the page."),
    # One-line notes in the conversation.
    "lineRequested": gettext_noop("You asked to talk to a team member"),
    "lineDeclined": gettext_noop("No problem, let's keep chatting"),
    "lineClaimed": gettext_noop("{agent} joined the conversation"),
    "lineTransferred": gettext_noop("{agent} transferred the conversation to {to}"),
    "lineTransferEnded": gettext_noop("{agent} didn't accept; waiting for a team member"),
    "lineTakenOver": gettext_noop("{agent} took over the conversation"),
    "lineTimedOut": gettext_noop("No team member was available"),
    "lineOffline": gettext_noop("No team member is online right now"),
    "lineAfterHours": gettext_noop("The team is outside office hours"),
    "lineLead": gettext_noop("You shared your mobile number"),
    "lineResolved": gettext_noop("The conversation was closed"),
    "lineResolvedBy": gettext_noop("{agent} closed the conversation"),
    "lineReleased": gettext_noop("{agent} left the conversation"),
    "lineResolvedIdle": gettext_noop("The conversation was closed after a while without messages"),
    "lineContinued": gettext_noop("You continued with the AI in a new chat"),
    "lineEnded": gettext_noop("You ended the chat"),
    "lineRatedGood": gettext_noop("You rated the conversation: good"),
    "lineRatedBad": gettext_noop("You rated the conversation: bad"),
    "lineRatedStars": gettext_noop("You rated the conversation {n}/5"),
    # Attachments.
    "attach": gettext_noop("Attach an image or PDF"),
    "uploading": gettext_noop("Uploading… {n}%"),
    "tooBig": gettext_noop("This file is too large (maximum {max} MB)."),
    "wrongType": gettext_noop("Only images (PNG, JPEG, GIF, WebP) and PDF files can be sent."),
    "uploadFailed": gettext_noop("The file could not be sent. Please try again."),
    "openImage": gettext_noop("Open image {name}"),
    "closeImage": gettext_noop("Close image"),
    "download": gettext_noop("Download {name}"),
    "unavailable": gettext_noop("This file is no longer available."),
    # Translators: the name shown for a file sent without one.
    "attachmentName": gettext_noop("attachment"),
    # Translators: file sizes in bytes, kilobytes and megabytes.
    "sizeB": gettext_noop("{n} B"),
    "sizeKB": gettext_noop("{n} KB"),
    "sizeMB": gettext_noop("{n} MB"),
}

PLURALS: dict[str, tuple[str, str]] = {
    "queueBeyond": ngettext_lazy("{n}+ person is ahead of you", "{n}+ people are ahead of you"),
    "waitUnder": ngettext_lazy("usually under {n} minute", "usually under {n} minutes"),
    # Translators: the label of a star in the 1 to 5 rating.
    "ratingStars": ngettext_lazy("{n} star", "{n} stars"),
    "tooLong": ngettext_lazy(
        "Your message is too long (maximum {n} character).", "Your message is too long (maximum {n} characters)."
    ),
    # Translators: the launcher's label on the customer's page: "Open chat (3 unread)".
    "openChatUnread": ngettext_lazy("Open chat ({n} unread)", "Open chat ({n} unread)"),
}
# fmt: on

# Intl.PluralRules category -> index of the gettext plural form, per language: CLDR's categories
# against the Plural-Forms each catalogue declares (makemessages copies Django's own: Spanish has a
# "many" form for millions). tests/test_widget_i18n.py checks that they agree. A category missing
# here (e.g. French "many" for a million) takes "other"'s form.
ONE_OTHER = {"one": 0, "other": 1}
PLURAL_MAPS: dict[str, dict[str, int]] = {
    "es": {"one": 0, "many": 1, "other": 2},
    "ar": {"zero": 0, "one": 1, "two": 2, "few": 3, "many": 4, "other": 5},
}
# A whole number of each category, to read that category's form from the catalogue.
SAMPLES: dict[str, dict[str, int]] = {
    "es": {"one": 1, "many": 1_000_000, "other": 2},
    "ar": {"zero": 0, "one": 1, "two": 2, "few": 3, "many": 11, "other": 100},
}
ONE_OTHER_SAMPLES = {"one": 1, "other": 2}


def plural_map(language: str) -> dict[str, int]:
    return PLURAL_MAPS.get(language, ONE_OTHER)


@functools.lru_cache(maxsize=16)  # one entry per language; catalogues load once per process
def widget_strings(language: str) -> dict[str, str | list[str]]:
    """Every widget string in ``language``: text, or the list of plural forms (index: ``plural_map``).
    Shared between requests: read it, never change it."""
    with translation.override(language):
        out: dict[str, str | list[str]] = {key: translation.gettext(msgid) for key, msgid in STRINGS.items()}
        mapping = plural_map(language)
        size = max(mapping.values()) + 1
        by_index = {index: category for category, index in mapping.items()}
        samples = SAMPLES.get(language, ONE_OTHER_SAMPLES)
        for key, (singular, plural) in PLURALS.items():
            out[key] = [translation.ngettext(singular, plural, samples[by_index[i]]) for i in range(size)]
    return out

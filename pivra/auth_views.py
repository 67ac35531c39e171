"""Account pages that differ from Django's stock views: the password reset form, throttled."""

from __future__ import annotations

from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.views import PasswordResetView
from django.http import HttpResponse
from django.utils.translation import ngettext

from pivra.client_ip import client_ip
from pivra.login_limits import minutes_to_wait, password_reset_limit_hit
from pivra.widget.ratelimit import RateLimited


class ThrottledPasswordResetView(PasswordResetView):
    """Django's reset form, with an hourly budget per client address and per email address. Over
    it the form says so (429); under it every address gets the same answer, known or not."""

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        try:
            password_reset_limit_hit(ip=client_ip(self.request), email=form.cleaned_data["email"])
        except RateLimited as exc:
            minutes = minutes_to_wait(exc.retry_after)
            form.add_error(
                None,
                ngettext(
                    "Too many reset requests. Try again in %(minutes)d minute.",
                    "Too many reset requests. Try again in %(minutes)d minutes.",
                    minutes,
                )
                % {"minutes": minutes},
            )
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().form_valid(form)

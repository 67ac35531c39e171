from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.urls import dashboard_urlpatterns as accounts_dashboard
from actions.urls import dashboard_urlpatterns as actions_dashboard
from attachments import urls as attachments_urls
from canned.urls import dashboard_urlpatterns as canned_dashboard
from chatbots.urls import dashboard_urlpatterns as chatbots_dashboard
from notifications.urls import dashboard_urlpatterns as notifications_dashboard
from pivra import health, views
from pivra.api import api
from pivra.auth_views import ThrottledPasswordResetView
from pivra.console.i18n_views import javascript_catalog
from pivra.console.urls import dashboard_urlpatterns as console_dashboard
from pivra.widget import sse
from pivra.widget import views as widget_views

# Each app owns its console pages; they share one namespace so templates say {% url 'dashboard:…' %}.
dashboard_patterns = [*chatbots_dashboard, *console_dashboard, *actions_dashboard, *canned_dashboard]
dashboard_patterns += accounts_dashboard  # the agent's own profile (console language)
dashboard_patterns += notifications_dashboard  # the service worker and the notification click target
# The console scripts' strings in one language (the code is in the URL, so the answer is cacheable).
dashboard_patterns += [path("jsi18n/<str:lang>/", javascript_catalog, name="jsi18n")]

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", health.healthz, name="healthz"),
    path("demo/", views.demo, name="demo"),
    path("dashboard/", include((dashboard_patterns, "dashboard"))),
    path("widget/frame/<str:public_key>/", widget_views.frame, name="widget-frame"),
    # Before the API: a streaming view, which the API router cannot serve.
    path("api/widget/stream", sse.stream, name="widget-stream"),
    # Before the API too: multipart uploads and file downloads (attachments/views.py).
    path("", include(attachments_urls)),
    path("api/", api.urls),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    # Before Django's auth URLs: the reset form with its hourly budgets (pivra/login_limits.py).
    path("accounts/password_reset/", ThrottledPasswordResetView.as_view(), name="password_reset"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]

# Anything that escaped a view or a middleware: a 503 when Redis / the broker is out of reach.
handler500 = "pivra.unavailable.server_error"

admin.site.site_header = "Pivra staff admin"
admin.site.site_title = "Pivra admin"
admin.site.index_title = "Plans, subscriptions, workspaces and everything else"

"""Pivra settings: one module, driven by ``PIVRA_*`` environment variables (see .env.example)."""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from notifications.vapid import vapid_keys, vapid_subject
from pivra.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
# A checkout keeps the site-wide templates/ and static/ next to manage.py; `pip install .` ships them inside the
# package as pivra/bundled/ (pyproject.toml maps them). An installed copy keeps its data in the user's data
# directory (XDG), never in site-packages and never in whatever directory a command happens to run from: two
# processes started from different directories would otherwise make two secret keys and two databases.
_BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
_INSTALLED = _BUNDLED_DIR.is_dir()
SITE_DIR = _BUNDLED_DIR if _INSTALLED else BASE_DIR


def _default_data_dir() -> Path:
    if not _INSTALLED:
        return BASE_DIR / "var"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "pivra"


DATA_DIR = Path(env_str("PIVRA_DATA_DIR", str(_default_data_dir()))).resolve()

DEBUG = env_bool("PIVRA_DEBUG", False)


def _secret_key() -> str:
    """Use PIVRA_SECRET_KEY, or a random key kept in the data dir so sessions survive restarts."""
    configured = env_str("PIVRA_SECRET_KEY", "")
    if configured:
        if len(configured) < 32:
            raise ImproperlyConfigured("PIVRA_SECRET_KEY must be at least 32 characters long.")
        return configured
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
# Fernet keys for tenant secrets at rest (pivra.crypto): the first encrypts, all decrypt. Empty: a
# key derived from SECRET_KEY. Rotation: README "Secrets at rest" and `manage.py rotate_secrets`.
ENCRYPTION_KEYS = env_list("PIVRA_ENCRYPTION_KEYS", [])
for _key in ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            "PIVRA_ENCRYPTION_KEYS: every key must be a Fernet key (32 url-safe base64 bytes), e.g. from "
            '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.'
        ) from None
PUBLIC_URL = env_str("PIVRA_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
if not PUBLIC_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"PIVRA_PUBLIC_URL={PUBLIC_URL!r} must start with http:// or https://.")
ALLOWED_HOSTS = env_list("PIVRA_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("PIVRA_CSRF_TRUSTED_ORIGINS", [])
SECURE_COOKIES = env_bool("PIVRA_SECURE_COOKIES", PUBLIC_URL.startswith("https://"))
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
BEHIND_PROXY = env_bool("PIVRA_BEHIND_PROXY", False)
# The client address is the one the Nth proxy from us saw (pivra/proxy.py): X-Forwarded-For is read
# from the right, so whatever a client writes into it itself is never taken.
PROXY_HOPS = env_int("PIVRA_PROXY_HOPS", 1, min_value=1, max_value=10)
# Forwarded headers count only from a direct peer in these ranges (pivra/proxy.py): by default where a
# proxy of ours can stand, loopback and the private ranges; a client reaching daphne directly cannot.
TRUSTED_PROXIES = env_list(
    "PIVRA_TRUSTED_PROXIES",
    ["127.0.0.0/8", "::1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
)
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy.strip(), strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"PIVRA_TRUSTED_PROXIES: {_proxy!r} is not an IP address or CIDR range (e.g. 10.0.0.0/8)."
        ) from None
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
_HTTPS = PUBLIC_URL.startswith("https://")
# HSTS: a year with an https public URL. includeSubDomains covers only names below the public host;
# preload is opt-in (it binds the whole registrable domain once submitted to the browsers' list).
SECURE_HSTS_SECONDS = env_int("PIVRA_HSTS_SECONDS", 31_536_000 if _HTTPS else 0, min_value=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("PIVRA_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("PIVRA_HSTS_PRELOAD", False)
# Redirect http to https only where Django can tell the two apart: behind a proxy that says so in
# X-Forwarded-Proto (without it every request looks like http, and the redirect would loop).
SECURE_SSL_REDIRECT = env_bool("PIVRA_SSL_REDIRECT", _HTTPS and BEHIND_PROXY)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load-balancer probes often speak plain http
# check --deploy's W021 asks for preload; leaving it off is the documented default, not an oversight.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
X_FRAME_OPTIONS = "DENY"  # the widget frame overrides this with frame-ancestors per chatbot

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "pivra",
    "chatbots",
    "conversations",
    "handoff",
    "actions",
    "canned",
    "notifications",
    "attachments",
    "accounts",
]

MIDDLEWARE = [
    "pivra.api_errors.ApiErrorsAsJson",  # first: every error under /api/ leaves as {code, detail}
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "pivra.middleware.RefuseUnstorableInput",  # before sessions: a NUL in a cookie is never looked up
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # the browser's language (Accept-Language) until an agent chose one
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.AgentLanguage",  # an agent's chosen console language wins over the browser's
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out login (page or admin) into the lockout page
    "pivra.unavailable.UnavailableAs503",  # Redis / broker / PostgreSQL out of reach: 503 + Retry-After, never 500
    "pivra.middleware.SyncMiddlewareChain",  # keep last: see its docstring
]

ROOT_URLCONF = "pivra.urls"
ASGI_APPLICATION = "pivra.asgi.application"
WSGI_APPLICATION = "pivra.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [SITE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "pivra.context_processors.pivra",
                "pivra.context_processors.console",
                "notifications.context_processors.web_push",
            ],
        },
    },
]


def _database() -> dict[str, object]:
    url = env_str("PIVRA_DATABASE_URL", f"sqlite:///{DATA_DIR / 'pivra.sqlite3'}")
    try:
        config: dict[str, object] = dict(dj_database_url.parse(url))
    except Exception as exc:  # the library raises several types for one cause: a bad URL
        raise ImproperlyConfigured(f"PIVRA_DATABASE_URL is malformed: {exc}") from None
    engine = str(config.get("ENGINE", ""))
    if engine == "django.db.backends.postgresql":
        if not config.get("NAME"):
            raise ImproperlyConfigured("PIVRA_DATABASE_URL names no database (postgresql://user@host:port/NAME).")
        pool_max = env_int("PIVRA_DB_POOL_MAX", 20, min_value=1, max_value=500)
        # psycopg 3's pool: connections are reused across requests, socket consumers and tasks.
        config["OPTIONS"] = {"pool": {"min_size": 1, "max_size": pool_max, "timeout": 10}}
        config["CONN_MAX_AGE"] = 0
    elif engine == "django.db.backends.sqlite3":
        Path(str(config["NAME"])).parent.mkdir(parents=True, exist_ok=True)
        # IMMEDIATE takes the write lock at BEGIN, so two writers queue instead of failing mid-way.
        config["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    else:
        raise ImproperlyConfigured(
            f"PIVRA_DATABASE_URL must be a postgresql:// or sqlite:/// URL, not {url.split(':', 1)[0]!r}."
        )
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("PIVRA_REDIS_URL", "redis://127.0.0.1:6379/0")
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"PIVRA_REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://.")

# "pubsub" publishes each group message once (one Redis PUBLISH, pushed to subscribers); "lists" is
# channels-redis's classic layer (sorted sets per channel, polled with BZPOPMIN). Both lose nothing a
# client cares about: every frame carries its conversation seq and a reconnect replays from the log.
CHANNEL_LAYER = env_choice("PIVRA_CHANNEL_LAYER", "pubsub", ("pubsub", "lists"))
CHANNEL_PREFIX = env_str("PIVRA_CHANNEL_PREFIX", "pivra")
CHANNEL_LAYERS = {
    "default": (
        {
            "BACKEND": "pivra.channel_layer.PivraPubSubChannelLayer",  # lighter per-socket inbox
            "CONFIG": {"hosts": [REDIS_URL], "prefix": CHANNEL_PREFIX},
        }
        if CHANNEL_LAYER == "pubsub"
        else {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": CHANNEL_PREFIX, "capacity": 500, "expiry": 30},
        }
    )
}

CACHES: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "pivra.cache.SharedRedisCache",  # one pool per process, JSON values
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "pivra",
        # A Redis that hangs (rather than refuses) must not hold a request forever: it answers 503.
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
    }
}
# Sessions are read on every console request: from Redis first, with the database as the record
# (pivra/sessions.py: still readable from the database while Redis is down).
SESSION_ENGINE = "pivra.sessions"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

# Password guessing (pivra/login_limits.py): django-axes counts failed logins, on the login page and
# the admin login alike, per client address, per (account, address) pair and — with a much higher
# limit, so ten guesses from anywhere cannot lock an account out — per account. Its cache handler keeps
# the counters in Redis with an expiry: no database row per guess, shared by every server process.
AUTHENTICATION_BACKENDS = [
    "pivra.login_limits.LoginThrottleBackend",  # first: refuses a locked-out login before any check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "pivra.login_limits.LoginCacheHandler"  # axes' cache handler + the account-wide counter
AXES_FAILURE_LIMIT = env_int("PIVRA_LOGIN_FAILURE_LIMIT", 10, min_value=1, max_value=1000)
LOGIN_ACCOUNT_FAILURE_LIMIT = env_int("PIVRA_LOGIN_ACCOUNT_FAILURE_LIMIT", 50, min_value=1, max_value=100_000)
# A counter lives this long after its latest failure; a lockout lasts this long after it began
# (failures while locked out do not extend it, so "try again in N minutes" holds).
AXES_COOLOFF_TIME = timedelta(minutes=env_int("PIVRA_LOGIN_LOCKOUT_MINUTES", 15, min_value=1, max_value=1440))
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_PARAMETERS = ["ip_address", ["username", "ip_address"]]  # each on its own counter
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "pivra.client_ip.client_ip"
AXES_USERNAME_CALLABLE = "pivra.login_limits.login_username"
AXES_LOCKOUT_CALLABLE = "pivra.login_limits.lockout_response"
AXES_ENABLE_ADMIN = False  # the cache handler writes no attempt rows: the admin pages would stay empty
PASSWORD_RESETS_PER_ADDRESS_HOUR = env_int("PIVRA_PASSWORD_RESETS_PER_ADDRESS_HOUR", 5, min_value=1)
PASSWORD_RESETS_PER_IP_HOUR = env_int("PIVRA_PASSWORD_RESETS_PER_IP_HOUR", 20, min_value=1)

# Issue 17: the widget speaks the visitor's language and the console the agent's. English is the source
# language (msgids); the catalogues live in locale/ (README "Languages" says how to add one). Codes are
# Django's (lowercase, "pt-br"): the widget and the console negotiate against exactly this list.
LANGUAGE_CODE = "en"
LANGUAGES = [
    ("en", "English"),
    ("fr", "Français"),
    ("de", "Deutsch"),
    ("es", "Español"),
    ("pt-br", "Português (Brasil)"),
    ("it", "Italiano"),
    ("nl", "Nederlands"),
    ("ar", "العربية"),
]
LOCALE_PATHS = [SITE_DIR / "locale"]
TIME_ZONE = env_str("PIVRA_TIME_ZONE", "UTC")
USE_I18N = True
# Display formats per language (pivra/formats/<lang>/formats.py; others: Django's own).
FORMAT_MODULE_PATH = ["pivra.formats"]
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [SITE_DIR / "static"]
# Uploaded files (attachments): a directory that is never served as such (no MEDIA_URL route, not
# whitenoise's): every download goes through attachments.views, which checks who asks. Or an
# S3-compatible bucket through django-storages, read back through the same view (never a public URL).
MEDIA_ROOT = Path(env_str("PIVRA_MEDIA_DIR", str(DATA_DIR / "media"))).resolve()
STORAGE_KIND = env_choice("PIVRA_STORAGE", "filesystem", ("filesystem", "s3"))
_DEFAULT_STORAGE: dict[str, Any] = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": None},
}
if STORAGE_KIND == "s3":
    if not env_str("PIVRA_S3_BUCKET", ""):
        raise ImproperlyConfigured("PIVRA_STORAGE=s3 needs PIVRA_S3_BUCKET.")
    try:  # runtime dependencies; an install without them says so at startup, not at the first upload
        import boto3  # noqa: F401
        import storages  # noqa: F401
    except ImportError:
        raise ImproperlyConfigured(
            "PIVRA_STORAGE=s3 needs boto3 and django-storages: pip install 'django-storages[s3]'."
        ) from None
    _DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("PIVRA_S3_BUCKET", ""),
            "endpoint_url": env_str("PIVRA_S3_ENDPOINT_URL", "") or None,
            "access_key": env_str("PIVRA_S3_ACCESS_KEY_ID", "") or None,
            "secret_key": env_str("PIVRA_S3_SECRET_ACCESS_KEY", "") or None,
            "region_name": env_str("PIVRA_S3_REGION", "") or None,
            "default_acl": None,  # the bucket's own policy (private); some S3-compatible stores refuse ACLs
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
STORAGES = {
    "default": _DEFAULT_STORAGE,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve straight from static/ too, so a missed collectstatic still works

# Email: SMTP when PIVRA_EMAIL_HOST is set, otherwise printed to the console.
EMAIL_HOST = env_str("PIVRA_EMAIL_HOST", "")
EMAIL_PORT = env_int("PIVRA_EMAIL_PORT", 587, min_value=1, max_value=65535)
EMAIL_HOST_USER = env_str("PIVRA_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = env_str("PIVRA_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("PIVRA_EMAIL_USE_TLS", EMAIL_PORT == 587)
EMAIL_USE_SSL = env_bool("PIVRA_EMAIL_USE_SSL", EMAIL_PORT == 465)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("PIVRA_EMAIL_USE_TLS and PIVRA_EMAIL_USE_SSL cannot both be on.")
EMAIL_TIMEOUT = 10
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env_str("PIVRA_EMAIL_FROM", "Pivra <pivra@localhost>")
# Transcript emails per hour across the whole installation (visitors and agents; conversations/transcript_send.py).
TRANSCRIPTS_PER_HOUR = env_int("PIVRA_TRANSCRIPTS_PER_HOUR", 500, min_value=1)
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Web Push to agents (notifications/): the VAPID key pair, generated once into the data dir when unset.
WEB_PUSH_ENABLED = env_bool("PIVRA_WEB_PUSH", True)
VAPID_PRIVATE_KEY, VAPID_PUBLIC_KEY = (
    vapid_keys(
        private=env_str("PIVRA_VAPID_PRIVATE_KEY", ""), public=env_str("PIVRA_VAPID_PUBLIC_KEY", ""), data_dir=DATA_DIR
    )
    if WEB_PUSH_ENABLED
    else ("", "")
)
# The push services a browser's subscription may point at: https on the default port only (loopback too
# where PIVRA_OUTBOUND_ALLOW_PRIVATE is on). "*.example" is any subdomain of example.
WEB_PUSH_HOSTS = tuple(
    h.strip().lower()
    for h in env_list(
        "PIVRA_WEB_PUSH_HOSTS",
        ["fcm.googleapis.com", "*.push.services.mozilla.com", "*.notify.windows.com", "web.push.apple.com"],
    )
    if h.strip()
)
VAPID_SUBJECT = vapid_subject(
    configured=env_str("PIVRA_VAPID_SUBJECT", ""), default_email=parseaddr(DEFAULT_FROM_EMAIL)[1] or "pivra@localhost"
)

# Celery: JSON only, late acks so a killed worker's task is redelivered.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redelivery of unacked tasks after a worker dies: kept short so a lost expiry or delivery is
# retried quickly; long timers rely on the beat sweeps, never on one long countdown.
# Socket limits: a Redis that hangs (stopped, or its route dropped) rather than refusing must not hold
# an on-commit enqueue, and with it the request, for minutes; the read limit stays well above the
# consumer's 1 s BRPOP.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("PIVRA_TASK_VISIBILITY_TIMEOUT", 300, min_value=30),
    "socket_connect_timeout": 5,
    "socket_timeout": 15,
}
CELERY_TASK_ALWAYS_EAGER = False
# Three queues, each with its own worker (pivra/stack.py), so nothing slow waits in front of a timer:
#   celery      handoff timers, the handoff and unanswered-message sweeps, push repair (quick, DB only)
#   ai          AI replies: each waits on an LLM endpoint for up to PIVRA_LLM_DEADLINE
#   deliveries  webhooks, Slack, email, and the outbox fan-out, sweep and digests that feed them:
#               they wait on other people's servers (up to the webhook timeout each)
# A worker started without -Q consumes all three, so nothing is stranded.
CELERY_TASK_DEFAULT_QUEUE = "celery"
# Explicit routing keys: a Queue without one is bound with the default key, so every queue would
# receive (and run) every task.
CELERY_TASK_QUEUES = (
    Queue("celery", routing_key="celery"),
    Queue("ai", routing_key="ai"),
    Queue("deliveries", routing_key="deliveries"),
)
CELERY_TASK_ROUTES = {
    "conversations.tasks.generate_ai_reply": {"queue": "ai"},
    "actions.tasks.attempt_delivery": {"queue": "deliveries"},
    "actions.tasks.notify_action_paused": {"queue": "deliveries"},
    "actions.tasks.dispatch_outbox_event": {"queue": "deliveries"},
    "actions.tasks.sweep_deliveries": {"queue": "deliveries"},
    "actions.tasks.send_notification_digests": {"queue": "deliveries"},
    "notifications.tasks.push_deliver": {"queue": "deliveries"},
    "conversations.tasks.send_transcript": {"queue": "deliveries"},
}

# Product settings.
LLM_BASE_URL = env_str("PIVRA_LLM_BASE_URL", "")
LLM_API_KEY = env_str("PIVRA_LLM_API_KEY", "")
LLM_MODEL = env_str("PIVRA_LLM_MODEL", "gpt-4o-mini")
LLM_TIMEOUT = env_float("PIVRA_LLM_TIMEOUT", 30.0)  # each connect / read of the AI endpoint
# The whole AI reply, first byte to last: an endpoint that drips tokens is cut off here.
LLM_DEADLINE = env_float("PIVRA_LLM_DEADLINE", 120.0)
if not 1 <= LLM_DEADLINE <= 600:
    raise ImproperlyConfigured(f"PIVRA_LLM_DEADLINE={LLM_DEADLINE:g} must be between 1 and 600 seconds.")
# AI calls running at once per chatbot and per workspace (conversations/ai_slots.py); the excess
# waits its turn in the queue, not in a worker thread, so one tenant's slow endpoint cannot take
# the AI worker's whole pool (PIVRA_AI_WORKER_CONCURRENCY, read by pivra/stack.py).
AI_CONCURRENCY_PER_CHATBOT = env_int("PIVRA_AI_CONCURRENCY_PER_CHATBOT", 4, min_value=1, max_value=1000)
AI_CONCURRENCY_PER_WORKSPACE = env_int("PIVRA_AI_CONCURRENCY_PER_WORKSPACE", 8, min_value=1, max_value=1000)
# The unanswered sweep (conversations/ai_sweep.py): a visitor message routed to the AI that has no
# reply this long after it was stored (its task was lost) is queued again, up to the look-back.
AI_UNANSWERED_GRACE_SECONDS = env_int("PIVRA_AI_UNANSWERED_GRACE_SECONDS", 10, min_value=1, max_value=3600)
AI_UNANSWERED_LOOKBACK_MINUTES = env_int("PIVRA_AI_UNANSWERED_LOOKBACK_MINUTES", 60, min_value=1, max_value=1440)
VISITOR_TOKEN_MAX_AGE = env_int("PIVRA_VISITOR_TOKEN_DAYS", 90, min_value=1) * 86_400
RATE_VISITOR_PER_MINUTE = env_int("PIVRA_RATE_VISITOR_PER_MINUTE", 30, min_value=1)
RATE_IP_PER_MINUTE = env_int("PIVRA_RATE_IP_PER_MINUTE", 300, min_value=1)
WIDGET_MAX_FRAME_BYTES = 16_384
HANDOFF_SWEEP_SECONDS = env_float("PIVRA_HANDOFF_SWEEP_SECONDS", 2.0)
# A live (active) handoff with no visitor or agent message this long is resolved with reason "idle"
# (per chatbot: Chatbot.handoff_idle_minutes). Checked every PIVRA_HANDOFF_SWEEP_SECONDS by the idle sweep,
# which also returns to the queue any live chat whose agent can no longer act (handoff/transitions/idle.py).
HANDOFF_IDLE_MINUTES = env_int("PIVRA_HANDOFF_IDLE_MINUTES", 30, min_value=1, max_value=10_080)
# How long a member stays Online after their last console socket closed (a reload is not a departure).
PRESENCE_GRACE_SECONDS = env_int("PIVRA_PRESENCE_GRACE_SECONDS", 60, min_value=0, max_value=3600)
# How often beat drops dead presence leases and announces who went Offline (chatbots/presence.py).
PRESENCE_SWEEP_SECONDS = 5.0
# How long a colleague has to accept a transferred conversation before it goes back to the queue.
TRANSFER_ACCEPT_SECONDS = env_int("PIVRA_TRANSFER_ACCEPT_SECONDS", 60, min_value=5, max_value=3600)
# Round robin (Chatbot.handoff_routing): how long the offered agent has to accept before the next one is asked.
ROUTING_OFFER_SECONDS = env_int("PIVRA_ROUTING_OFFER_SECONDS", 30, min_value=5, max_value=3600)
# Actions: webhook / Slack / email deliveries. Private and loopback destinations are refused
# unless allowed (local development and tests only).
# Every tenant-chosen URL (webhooks, Slack, AI endpoint) goes through pivra.outbound; this opens
# loopback and private ranges there. PIVRA_WEBHOOK_ALLOW_PRIVATE is its older name, still read.
OUTBOUND_ALLOW_PRIVATE = env_bool("PIVRA_OUTBOUND_ALLOW_PRIVATE", False)
OUTBOUND_ALLOW_PRIVATE = OUTBOUND_ALLOW_PRIVATE or env_bool("PIVRA_WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_ALLOW_PRIVATE = OUTBOUND_ALLOW_PRIVATE
WEBHOOK_TIMEOUT = env_float("PIVRA_WEBHOOK_TIMEOUT", 15.0)
if not 1 <= WEBHOOK_TIMEOUT <= 60:
    raise ImproperlyConfigured(f"PIVRA_WEBHOOK_TIMEOUT={WEBHOOK_TIMEOUT:g} must be between 1 and 60 seconds.")
DELIVERY_SWEEP_SECONDS = env_float("PIVRA_DELIVERY_SWEEP_SECONDS", 5.0)
# Escalation and lead notifications per chatbot and event type in each window; the rest of the
# window's notifications go out as one digest when it ends (actions/caps.py).
NOTIFY_LIMIT = env_int("PIVRA_NOTIFY_LIMIT", 20, min_value=1)
NOTIFY_WINDOW_MINUTES = env_int("PIVRA_NOTIFY_WINDOW_MINUTES", 10, min_value=1, max_value=1440)
MESSAGE_MAX_LENGTH = env_int("PIVRA_MESSAGE_MAX_LENGTH", 2000, min_value=100, max_value=20_000)
# Attachments (attachments/): the largest file, how many and how many bytes one conversation may
# hold, and how long a signed download link lives.
ATTACHMENT_MAX_BYTES = env_int("PIVRA_ATTACHMENT_MAX_MB", 10, min_value=1, max_value=100) * 1024 * 1024
ATTACHMENTS_PER_CONVERSATION = env_int("PIVRA_ATTACHMENTS_PER_CONVERSATION", 50, min_value=1, max_value=10_000)
ATTACHMENT_CONVERSATION_MAX_BYTES = (
    env_int("PIVRA_ATTACHMENT_CONVERSATION_MAX_MB", 100, min_value=1, max_value=100_000) * 1024 * 1024
)
ATTACHMENT_LINK_SECONDS = env_int("PIVRA_ATTACHMENT_LINK_SECONDS", 3600, min_value=60, max_value=86_400)
# A workspace's files in all; image decodes at once per process (~100 MB each); upload and byte budgets
# per visitor/agent and IP (attachments/budgets.py).
ATTACHMENT_WORKSPACE_MAX_BYTES = env_int("PIVRA_ATTACHMENT_WORKSPACE_MAX_MB", 5000, min_value=1) * 1024 * 1024
ATTACHMENT_DECODES = env_int("PIVRA_ATTACHMENT_DECODES", 1, min_value=1, max_value=64)
ATTACHMENT_UPLOADS_PER_MINUTE = env_int("PIVRA_ATTACHMENT_UPLOADS_PER_MINUTE", 10, min_value=1)
ATTACHMENT_UPLOAD_MB_PER_HOUR = env_int("PIVRA_ATTACHMENT_UPLOAD_MB_PER_HOUR", 200, min_value=1)
ATTACHMENT_DOWNLOAD_MB_PER_HOUR = env_int("PIVRA_ATTACHMENT_DOWNLOAD_MB_PER_HOUR", 2000, min_value=1)
# Files past this size are spooled to a temporary file while uploaded; the upload handler stops
# reading a file past ATTACHMENT_MAX_BYTES (attachments/uploads.py).
FILE_UPLOAD_HANDLERS = [
    "attachments.uploads.SizeLimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# A visitor message flows through these steps in order until one handles it (like middleware).
MESSAGE_PIPELINE = [
    "notifications.pipeline.tell_live_agent",  # never handles the message: tells the claiming agent
    "handoff.pipeline.silence_during_handoff",
    "handoff.pipeline.offer_on_keyword",
    "conversations.pipeline.reply_with_ai",
]
LOG_LEVEL = env_choice("PIVRA_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # failures and lockouts; not a line per successful login
        # httpx logs each request's full URL at INFO: push endpoints and Slack webhook URLs are capabilities.
        "httpx": {"level": "WARNING"},
    },
}

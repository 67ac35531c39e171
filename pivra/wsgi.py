from __future__ import annotations

from django.core.wsgi import get_wsgi_application

from pivra.bootstrap import configure_or_exit

configure_or_exit()
application = get_wsgi_application()

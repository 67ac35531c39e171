from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from chatbots.demo import demo_seed


class Command(BaseCommand):
    help = "Create or refresh the demo workspace, chatbot, staff user and agents (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", default="pivra-demo", help="Password for every demo login.")

    def handle(self, *args: Any, **options: Any) -> None:
        password: str = options["password"]
        if len(password) < 6:
            self.stderr.write("seed_demo: --password must be at least 6 characters.")
            raise SystemExit(2)
        logins = demo_seed(password=password)
        url = settings.PUBLIC_URL
        self.stdout.write(
            "\n".join(
                [
                    "Demo data ready.",
                    f"  Demo website     {url}/demo/",
                    f"  Agent dashboard  {url}/dashboard/",
                    f"  Staff admin      {url}/admin/",
                    f"  Staff login      {logins.staff} / {logins.password}",
                    *(f"  Agent login      {name} / {logins.password}" for name in logins.agents),
                ]
            )
        )

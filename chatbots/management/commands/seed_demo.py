from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chatbots.demo import demo_is_needed, demo_seed


class Command(BaseCommand):
    help = (
        "Create or refresh the demo workspace, chatbot, staff user and agents (idempotent). A missing demo "
        "user is created with --password, or a random password each; an existing user's password is never changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password",
            default=os.environ.get("PIVRA_DEMO_PASSWORD") or None,
            help="Password for demo users created now (default: PIVRA_DEMO_PASSWORD, else a random one each).",
        )
        parser.add_argument(
            "--if-empty", action="store_true", help="Only seed a database with no user and no workspace yet."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password: str | None = options["password"]
        if password is not None:
            if settings.PUBLIC_URL.startswith("https://"):
                raise CommandError(
                    "a fixed demo password is refused when PIVRA_PUBLIC_URL is https (a known password on a public "
                    "site): unset PIVRA_DEMO_PASSWORD / --password and random passwords are printed once"
                )
            if len(password) < 6:
                raise CommandError("--password must be at least 6 characters.")
        url = settings.PUBLIC_URL
        links = [
            f"  Demo website     {url}/demo/",
            f"  Agent dashboard  {url}/dashboard/",
            f"  Staff admin      {url}/admin/",
        ]
        if options["if_empty"] and not demo_is_needed():
            self.stdout.write("\n".join(["Existing data kept: no demo data loaded, no password changed.", *links]))
            return
        seed = demo_seed(password=password)
        lines = ["Demo data ready.", *links]
        # Only passwords set just now: they are printed this once and stored nowhere else.
        lines += [
            f"  {'Staff' if login.staff else 'Agent'} login      {login.username} / {login.password}"
            for login in seed.created
        ]
        if not seed.created:
            lines.append("  Existing demo logins kept their passwords.")
        self.stdout.write("\n".join(lines))

"""``pivra``: Django's management commands for an installed copy (``pip install .``), as manage.py is for a checkout."""

from __future__ import annotations

import sys


def main() -> None:
    from pivra.bootstrap import configure_or_exit

    configure_or_exit()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)

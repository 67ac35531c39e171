#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

from __future__ import annotations

from pivra.cli import main

if __name__ == "__main__":
    main()

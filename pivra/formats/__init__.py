"""Pivra's own display formats per language (settings.FORMAT_MODULE_PATH); languages without a module
here use Django's formats. English keeps the console's day-month style ("1 Mar 2026, 09:05")."""

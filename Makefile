# One entry point. `make run` and `make test` are the README's two commands.
.PHONY: run test lint fmt bench lock messages

run:
	./scripts/run

test:
	./scripts/test

lint:
	.venv/bin/ruff format --check . && .venv/bin/ruff check . && .venv/bin/mypy .

fmt:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

bench:
	./scripts/bench

# Translation catalogues (needs gettext): extract the marked strings of every language of settings.LANGUAGES into
# locale/<lang>/LC_MESSAGES/{django,djangojs}.po, then compile the .mo files, which are committed (README "Languages").
messages:
	.venv/bin/python -m pivra.messages

# pyproject.toml is the one dependency list. uv keeps every version already in a lock (add
# --upgrade-package NAME to move one); dev.lock is constrained to base.lock so both install the same runtime.
lock:
	.venv/bin/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -o requirements/base.lock
	.venv/bin/uv pip compile pyproject.toml --extra dev -c requirements/base.lock --generate-hashes --python-version 3.11 -o requirements/dev.lock

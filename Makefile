# One entry point. `make run` and `make test` are the README's two commands.
.PHONY: run test lint fmt bench lock

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

lock:
	.venv/bin/uv pip compile requirements/base.in --generate-hashes --python-version 3.11 -o requirements/base.lock
	.venv/bin/uv pip compile requirements/dev.in --generate-hashes --python-version 3.11 -o requirements/dev.lock

# Shortcuts; the scripts are the reference (README).
.PHONY: run test lint format
run:
	scripts/run
test:
	scripts/test
lint:
	.venv/bin/ruff check archive_node tests
	.venv/bin/ruff format --check archive_node tests
format:
	.venv/bin/ruff format archive_node tests
	.venv/bin/ruff check --fix archive_node tests

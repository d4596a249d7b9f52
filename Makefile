# Shortcuts; the scripts are the reference (README).
.PHONY: run test bench lint format
run:
	scripts/run
test:
	scripts/test
bench:
	scripts/bench find
	scripts/bench retrieve
lint:
	.venv/bin/ruff check archive_node tests bench
	.venv/bin/ruff format --check archive_node tests bench
	.venv/bin/mypy
format:
	.venv/bin/ruff format archive_node tests bench
	.venv/bin/ruff check --fix archive_node tests bench

"""Process tests: real `archive-node serve` subprocesses, started, stopped and killed."""

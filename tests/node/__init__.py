"""In-process tests: a real index, a node served in the test process, the CLI by CliRunner."""

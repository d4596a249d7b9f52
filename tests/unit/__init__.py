"""Pure tests: no running node and no database; functions, rules and bytes in isolation."""

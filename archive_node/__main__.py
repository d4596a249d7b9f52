"""Allow `python -m archive_node`, the same as the `archive-node` command."""

from .cli import main

if __name__ == "__main__":
    main()

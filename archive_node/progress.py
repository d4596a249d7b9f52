"""How a long run (verify, reindex, import) reports how far it has come; the CLI draws a bar."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Where a long run reports how far it has come (the CLI draws a bar on a terminal)."""

    def begin(self, label: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...

    def end(self) -> None: ...


class NoProgress:
    """Progress reported to no one."""

    def begin(self, label: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def end(self) -> None:
        pass

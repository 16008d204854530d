"""``Tainted``: a value and the secrets it derives from, which is how taint travels.

The evaluator returns one per expression, and the runner puts results back into later
scopes as they are, so a value derived from a secret stays marked from step to step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

EMPTY: Final[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Tainted:
    """A value and the names of the secrets it was derived from (``frozenset()``: none).

    Evaluation returns one; an engine puts it into the next step's scope as is (as ``_``, in
    ``outputs`` or ``steps``, at any depth) so taint follows the data from step to step.
    The repr hides the value, which may hold a secret.
    """

    value: Any
    secrets: frozenset[str] = EMPTY

    def __repr__(self) -> str:
        return f"Tainted(<{type(self.value).__name__}>, secrets={sorted(self.secrets)!r})"

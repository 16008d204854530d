"""Secret (and tenant) names: identifiers of at most 128 characters.

Shared by the server, which enforces the rule, and the command line, which checks names
read from files before it sends them; it imports nothing, so the client can use it.
"""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # always fullmatch: "$" admits "\n"
NAME_MAX = 128


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid name, or None when it is."""
    if len(name) > NAME_MAX:
        return f"name is longer than {NAME_MAX} characters"
    if not NAME_PATTERN.fullmatch(name):
        return (
            "name must be a valid identifier: letters, digits and underscores, "
            "not starting with a digit"
        )
    return None

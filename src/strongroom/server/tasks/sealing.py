"""What a task step's full result is sealed under while its execution runs.

The runner seals each step's result for later steps and wipes it when the execution
ends; rotation rewraps it like any sealed data (storage lists these rows as kind
``step``, see ``storage/executions.py``).
"""

from __future__ import annotations

from ..crypto import SealContext

STEP_RESULT = "step"


def step_result_context(tenant_id: str, execution_id: str, index: int) -> SealContext:
    """``strongroom|step|v1|<tenant>|<execution>|<index>``; its data key's kind is
    ``step-dek``."""
    return SealContext(STEP_RESULT, (tenant_id, execution_id, str(index)))

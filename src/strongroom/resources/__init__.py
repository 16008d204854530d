"""The client's resources (``client.secrets``, ``client.tasks``, ...): one module each,
holding its calls' request builders and its blocking and asyncio classes."""

from .audit import AsyncAudit, Audit
from .executions import AsyncExecutions, Executions
from .keys import AsyncKeys, Keys
from .secrets import AsyncSecrets, Secrets
from .tasks import AsyncTasks, Tasks

__all__ = [
    "AsyncAudit",
    "AsyncExecutions",
    "AsyncKeys",
    "AsyncSecrets",
    "AsyncTasks",
    "Audit",
    "Executions",
    "Keys",
    "Secrets",
    "Tasks",
]

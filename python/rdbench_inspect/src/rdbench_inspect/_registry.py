"""What Inspect loads through the `inspect_ai` entry point: the task and the sandbox."""

from .sandbox import AgentUserLocalSandbox  # noqa: F401  (registers `rdbench_local`)
from .task import rdbench  # noqa: F401

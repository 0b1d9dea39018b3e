"""The type of what the builders produce: one Kubernetes object as the API server's JSON.

Plain dicts, not the client's generated models: they go to server-side apply as they are, and
compare field by field with what the API server returns (`controller.drift`).
"""

from typing import Any, TypeAlias

Manifest: TypeAlias = dict[str, Any]

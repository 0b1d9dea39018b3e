"""The exception every expected failure of the optimizer's code raises.

Its class (`Failure`, from the contract) decides the exit code and the reason in the termination
summary; its message names the cause (file, URI or flag) in one line, with every credential
redacted (`hide_secrets`): the message goes to stderr, the termination message, and from there into
the ModelDeployment's status and Events.
"""

from __future__ import annotations

import os

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.redact import redact, secret_values


def hide_secrets(text: str) -> str:
    """`text` without any value of the credentials Secret (or of a well-known credential variable)
    and without user info in URLs. The environment is read each time: it is small, and tests change it."""
    return redact(text, secret_values(os.environ))


class OptimizeError(Exception):
    """A failure with a known class; `message` names the cause (file, URI or flag) in one line."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = hide_secrets(" ".join(message.split()))  # always one line, never a credential

    @property
    def exit_code(self) -> int:
        return self.failure.exit_code

    def __str__(self) -> str:
        return f"{self.failure.value}: {self.message}"

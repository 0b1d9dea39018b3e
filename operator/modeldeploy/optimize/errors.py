"""The exception every expected failure of the optimizer's code raises.

Its class (`Failure`, from the contract) decides the exit code and the reason in the termination
summary; its message names the cause (file, URI or flag) in one line.
"""

from __future__ import annotations

from modeldeploy.contract.failures import Failure


class OptimizeError(Exception):
    """A failure with a known class; `message` names the cause (file, URI or flag) in one line."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = " ".join(message.split())  # always one line

    @property
    def exit_code(self) -> int:
        return self.failure.exit_code

    def __str__(self) -> str:
        return f"{self.failure.value}: {self.message}"

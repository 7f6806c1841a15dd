"""Errors a user can act on. They print as one line each, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a missing tool: the message says what and where. Exit code 1."""

    exit_code = 1

    def __init__(self, *lines: str) -> None:
        self.lines = [line for line in lines if line]
        super().__init__("\n".join(self.lines))


class CommandError(UserError):
    """A subprocess failed; the message names the command, its exit code and its output."""

    def __init__(self, argv: list[str], returncode: int, output: str, context: str = "") -> None:
        self.argv = argv
        self.returncode = returncode
        self.output = output
        import shlex

        head = f"{context}: " if context else ""
        lines = [f"{head}command failed with exit code {returncode}: {shlex.join(argv)}"]
        lines += [f"  {line}" for line in output.rstrip().splitlines()]
        super().__init__(*lines)

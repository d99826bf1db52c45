"""The one exception type the lab raises for problems a user can fix."""


class LabError(Exception):
    """A failure with a message that says what went wrong and what to do.

    `fix` is printed on its own line so a user can copy it.
    """

    def __init__(self, message: str, fix: str | None = None, log: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.log = log

    def __str__(self) -> str:
        text = self.message
        if self.fix:
            text += f"\n  fix: {self.fix}"
        if self.log:
            text += f"\n  log: {self.log}"
        return text

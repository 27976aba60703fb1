"""The non-finite update guard's error: raised after too many consecutive skipped updates."""


class NonFiniteUpdateError(RuntimeError):
    """``streak`` consecutive updates had a non-finite loss or gradient norm, the last at ``step``."""

    def __init__(self, step: int, streak: int) -> None:
        super().__init__(f"{streak} consecutive non-finite updates; the last at env step {step}")
        self.step = step
        self.streak = streak

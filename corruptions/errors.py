"""The error every process raises for a bad option."""


class ConfigurationError(ValueError):
    """An unknown name or an out-of-range value given to a process; the message is one line."""


class NfeRangeError(ConfigurationError):
    """A sampler's network calls ``nfe`` outside ``[1, most]``; ``limit`` says what sets ``most``."""

    def __init__(self, nfe: int, most: int, limit: str) -> None:
        super().__init__(f"nfe (sampler network calls) must lie in [1, {most}] ({limit}), got {nfe}")
        self.nfe, self.most, self.limit = nfe, most, limit

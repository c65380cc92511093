"""The error every process raises for a bad option."""


class ConfigurationError(ValueError):
    """An unknown name or an out-of-range value given to a process; the message is one line."""

"""Error hierarchy: every message says what is wrong, where, and how to fix it."""


class TidemarkError(Exception):
    """Base of every error Tidemark raises on purpose."""


class ConfigError(TidemarkError):
    """The configuration cannot be used; raised at start-up, never mid-stream."""


class ContractError(TidemarkError):
    """A contract (Avro schema) cannot be loaded or parsed."""

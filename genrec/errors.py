"""User-facing errors: the CLI prints these as one line, never a deep stack trace."""


class GenrecError(Exception):
    """Base class for errors caused by user input (files, configs, arguments)."""


class ConfigError(GenrecError):
    """An unknown key, a wrong type or a bad value in a config file or --set override."""


class DataError(GenrecError):
    """A missing file or column, an empty or malformed data file, an unusable split."""

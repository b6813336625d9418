"""Errors a user can act on. Each message names the file (and line or key) and the fix."""


class K12TuneError(Exception):
    """Base class: the CLI prints these without a traceback and exits with status 2."""


class ConfigError(K12TuneError):
    """A config file or command-line override is invalid."""


class DataError(K12TuneError):
    """Input data cannot be used as a whole (missing folder, unreadable file, bad JSON array)."""

"""Errors that reach a user as one clear line (the CLI prints them without a traceback)."""


class MnistError(Exception):
    """Base of every error that is shown to a user as its message alone."""


class ConfigError(MnistError):
    """A setting, flag or file that cannot be used."""


class BrokerError(MnistError):
    """The broker cannot be started, reached, or refused us."""


class ModelError(MnistError):
    """A model file that cannot be loaded or does not map 1x28x28 to 10 classes."""


class DatasetError(MnistError):
    """A dataset folder or list file that cannot be read."""


class RoleFailed(MnistError):
    """A role stopped working (an exception in one of its threads): state "error" in its status."""

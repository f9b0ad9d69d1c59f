from importlib import metadata

try:
    __version__ = metadata.version("medinfer")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"

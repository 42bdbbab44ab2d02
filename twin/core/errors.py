"""Errors the twin raises for bad input: each names the file and the offending item."""

from __future__ import annotations

from pathlib import Path


class TwinError(Exception):
    """Base class for every error the twin reports to its users."""


class FileError(TwinError):
    """Something wrong inside a file: the message starts with the file (and line when known)."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = Path(path)
        self.line = line
        self.detail = message
        where = f"{self.path}:{line}" if line else str(self.path)
        super().__init__(f"{where}: {message}")


class LayoutError(FileError):
    """A USD layout that cannot be opened or lacks what the twin needs."""


class UrdfError(FileError):
    """A robot description that cannot be read: bad XML, missing mesh, broken tree."""


class BindingError(FileError):
    """A binding file entry that is malformed or names something that does not exist."""


class KinematicsError(TwinError, ValueError):
    """Bad input to kinematics: wrong shapes, NaN, unknown link."""


class UnknownSignalError(TwinError, KeyError):
    """A signal key that the store or the twin does not know (a KeyError too, for callers that expect one)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return TwinError.__str__(self)

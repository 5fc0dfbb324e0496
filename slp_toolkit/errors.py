"""The error classes every module raises: the floor of the package (it imports nothing of it)."""

from __future__ import annotations


class UserError(ValueError):
    """Something the user can fix; the message is the whole story (one line). The CLI prints it and
    exits 2. Every module's own error class derives from this one."""


class ConfigError(UserError):
    """A recipe problem: the message names the source (file or `<command line>`) and the key."""

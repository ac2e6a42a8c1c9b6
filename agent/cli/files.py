"""Reading an input file a subcommand was given, with errors that name it."""

from __future__ import annotations

from pathlib import Path

from common.tomlcheck import ConfigError


def read_text(path: Path) -> str:
    """The file's text; ConfigError names the file and why it cannot be read as UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None

"""Reading settings from the environment (and a ``.env`` file) with one-line errors.

Every program builds its frozen settings dataclass once in ``__main__`` through an
``EnvReader``; a missing or malformed value raises ``SettingError`` whose message names the
variable, and ``__main__`` prints that one line and exits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from dotenv import dotenv_values


class SettingError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def load_environment(environ: Mapping[str, str] | None = None, dotenv_path: str = ".env") -> dict:
    """The process environment over the values of a ``.env`` file, if one exists.

    Real environment variables win, so a deployment can override a developer's file.
    """
    merged: dict[str, str] = {}
    if Path(dotenv_path).is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return merged


class EnvReader:
    """Typed access to an environment mapping; every error names the variable."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str | None = None) -> str:
        value = self._raw(name)
        if value is None:
            if default is None:
                raise SettingError(f"{name} is required but not set")
            return default
        return value

    def optional_text(self, name: str) -> str | None:
        return self._raw(name)

    def integer(
        self, name: str, default: int | None = None, *, minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        return self._numeric(name, default, int, "a whole number", minimum, maximum)

    def number(
        self, name: str, default: float | None = None, *, minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        return self._numeric(name, default, float, "a number", minimum, maximum)

    def _numeric(self, name, default, convert, kind, minimum, maximum):
        raw = self._raw(name)
        if raw is None:
            if default is None:
                raise SettingError(f"{name} is required but not set")
            return _in_range(name, default, minimum, maximum)
        try:
            value = convert(raw)
        except ValueError:
            raise SettingError(f"{name} must be {kind}, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise SettingError(f"{name} must be a finite number, got {raw!r}")
        return _in_range(name, value, minimum, maximum)

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingError(f"{name} must be true or false, got {raw!r}")

    def url(self, name: str, schemes: tuple[str, ...], default: str | None = None, *,
            check: Callable[[str], object] | None = None) -> str:
        """A URL of one of ``schemes``; ``check`` (raising ValueError) looks further."""
        value = self.text(name, default)
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in schemes or not rest:
            wanted = " or ".join(f"{s}://" for s in schemes)
            raise SettingError(f"{name} must be a URL starting with {wanted}, got {value!r}")
        if check is not None:
            try:
                check(value)
            except ValueError as exc:
                raise SettingError(f"{name}: {exc}") from None
        return value

    def text_list(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        raw = self._raw(name)
        if raw is None:
            return default
        return tuple(item.strip() for item in raw.split(",") if item.strip())


def _in_range(name, value, minimum, maximum):
    if minimum is not None and value < minimum:
        raise SettingError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name} must be at most {maximum}, got {value}")
    return value

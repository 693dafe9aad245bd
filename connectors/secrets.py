"""Secrets for connectors (passwords, key passphrases): from an environment variable or a file, never the TOML.

A configuration names *where* a secret is (``password_env = "TWIN_MQTT_PASSWORD"`` or
``password_file = "/run/credentials/twin.service/mqtt_password"``, which is where systemd's
``LoadCredential=`` puts it), not the secret itself. A literal ``password`` is accepted for tests and the demo.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

__all__ = ["SecretRef", "SecretError"]


class SecretError(ValueError):
    """A secret cannot be read; the message names the setting, the variable or file, and why."""


class SecretRef(BaseModel):
    """Where one secret comes from: exactly one of ``value``, ``env``, ``file`` (or none: no secret)."""

    model_config = ConfigDict(extra="forbid")
    value: SecretStr | None = None
    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_string(cls, data):
        # ``password = "literal"`` in TOML is shorthand for ``password = { value = "literal" }``
        return {"value": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("value", "env", "file") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of value, env, file for a secret, not {' and '.join(given)}")
        return self

    @property
    def given(self) -> bool:
        return any(getattr(self, k) is not None for k in ("value", "env", "file"))

    def resolve(self, what: str) -> str | None:
        """The secret's text (``None`` if no source is configured); :class:`SecretError` naming ``what``."""
        if self.value is not None:
            return self.value.get_secret_value()
        if self.env is not None:
            v = os.environ.get(self.env)
            if v is None:
                raise SecretError(f"{what}: environment variable {self.env} is not set")
            return v
        if self.file is not None:
            try:
                return self.file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"{what}: cannot read {self.file}: {exc.strerror or exc}") from None
        return None

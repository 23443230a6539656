"""A text field encrypted at rest (Fernet) for cluster credentials."""

import base64
import hashlib
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


def _fernet() -> Fernet:
    key = settings.MESHGATE_FIELD_ENCRYPTION_KEY
    if not key:
        raise ImproperlyConfigured("MESHGATE_FIELD_ENCRYPTION_KEY is not set")
    # Accept any secret string: derive a proper 32-byte Fernet key from it.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


class EncryptedTextField(models.TextField):
    def get_prep_value(self, value: Any) -> Any:
        if value in (None, ""):
            return value
        return _fernet().encrypt(str(value).encode()).decode()

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value in (None, ""):
            return value
        try:
            return _fernet().decrypt(value.encode()).decode()
        except InvalidToken as exc:
            raise ImproperlyConfigured(
                "a stored credential cannot be decrypted: MESHGATE_FIELD_ENCRYPTION_KEY changed"
            ) from exc

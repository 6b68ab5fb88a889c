"""Generating identifiers and credentials, and keeping secret keys encrypted at rest."""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits


def new_id() -> str:
    """A 32-character lower-case hex id, the shape of Huawei Cloud account/project ids."""
    return uuid.uuid4().hex


def new_access_key() -> str:
    """A 20-character upper-case access key id (AK), like ``HPUAL4W5KJQ0DB2MJQ8Z``."""
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(20))


def new_secret_key() -> str:
    """A 40-character secret access key (SK)."""
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


def new_token() -> str:
    """An opaque bearer token; only its SHA-256 is stored."""
    return "MIIT" + secrets.token_urlsafe(96)


def new_security_token() -> str:
    """The X-Security-Token that goes with a temporary AK/SK."""
    return "gQ5" + secrets.token_urlsafe(180)


def digest(secret: str) -> str:
    """The stored form of a token or security token: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


class SecretBox:
    """AES-256-GCM encryption of secret keys with the operator's key.

    Ciphertexts are ``v1:<base64(nonce || ciphertext || tag)>``; the account id is bound as
    associated data, so a ciphertext copied onto another row does not decrypt.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the operator key must be 32 bytes")
        self._aead = AESGCM(key)

    @staticmethod
    def generate_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def encrypt(self, plaintext: str, bound_to: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), bound_to.encode())
        return "v1:" + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, ciphertext: str, bound_to: str) -> str:
        version, _, payload = ciphertext.partition(":")
        if version != "v1":
            raise ValueError("unknown secret format")
        raw = base64.b64decode(payload)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], bound_to.encode()).decode()
        except InvalidTag:
            raise ValueError("the secret does not decrypt with this operator key") from None

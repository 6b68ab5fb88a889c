"""Password hashing with scrypt, a memory-hard function from the standard library.

Stored form: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``; the parameters travel with
the hash, so they can be raised later without invalidating existing passwords.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string

# n = 2**15, r = 8: 32 MiB and roughly 50-100 ms per hash on one core.
_LOG2_N = 15
_R = 8
_P = 1
_KEY_BYTES = 32
_MAXMEM = 64 * 1024 * 1024
_ALPHABET = string.ascii_letters + string.digits


def hash_password(password: str, log2_n: int = _LOG2_N) -> str:
    """``log2_n`` below 15 only for throwaway test accounts (IMAGEJOBS_PASSWORD_HASH_COST)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, log2_n, _R, _P)
    return "$".join(["scrypt", str(log2_n), str(_R), str(_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; constant-time in the comparison."""
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(log2_n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def generate_password(length: int = 20) -> str:
    """A random password with letters and digits (shown once, never stored in clear)."""
    while True:
        password = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if any(c.isdigit() for c in password) and any(c.isupper() for c in password):
            return password


def check_password_strength(password: str) -> str | None:
    """The reason ``password`` is too weak, or None."""
    if not 8 <= len(password) <= 128:
        return "must be 8 to 128 characters long"
    classes = sum(
        any(test(c) for c in password)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    if classes < 2:
        return "must mix at least two of: lower case, upper case, digits, symbols"
    return None


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=_KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

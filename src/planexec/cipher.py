"""AES-256-GCM for checkpoint values, and the keys planexec derives from a secret.

Apart from `planexec.serde` (LangGraph's serializers) so that the command line can read
an encrypted checkpoint without importing LangGraph. `cryptography` is imported when a
key is first used.
"""

from __future__ import annotations

import hashlib
import os

from planexec.errors import CheckpointError, ModelConfigError

__all__ = ["CIPHER", "TAMPERED", "AesGcm", "Decrypted", "derive"]

CIPHER = "aesgcm"
"""The cipher name LangGraph appends to each value's type (`msgpack+aesgcm`)."""

_NONCE = 12


class Decrypted(bytes):
    """Bytes that came out of the cipher, and so were encrypted and authenticated."""


def _secret(key: str | bytes) -> bytes:
    secret = key.encode() if isinstance(key, str) else bytes(key)
    if not secret:
        raise ValueError("the checkpoint key is empty")
    return secret


def derive(key: str | bytes, purpose: bytes) -> bytes:
    """A 32-byte key for `purpose`, derived from the secret `key` with SHA-256."""
    return hashlib.sha256(b"planexec checkpoint " + purpose + b"\0" + _secret(key)).digest()


TAMPERED = (
    "a checkpoint value failed its integrity check: it was changed or corrupted, "
    "or the key (PLANEXEC_CHECKPOINT_KEY) is not the one it was written with"
)


class AesGcm:
    """AES-256-GCM; the key is derived from the secret with SHA-256."""

    def __init__(self, key: str | bytes) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:  # pragma: no cover - the dev environment has it
            raise ModelConfigError(
                "encrypted checkpoints need the cryptography package: "
                "pip install 'planexec[encryption]'"
            ) from exc
        self._aead = AESGCM(derive(key, b"encryption"))

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """Encrypt and authenticate `plaintext`."""
        nonce = os.urandom(_NONCE)
        return CIPHER, nonce + self._aead.encrypt(nonce, plaintext, None)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        """The plaintext of `ciphertext`, if it is what `encrypt` returned."""
        from cryptography.exceptions import InvalidTag

        if ciphername != CIPHER:
            raise CheckpointError(
                f"a checkpoint value is encrypted with {ciphername!r}, not planexec's "
                f"{CIPHER!r}; refusing to read it"
            )
        try:
            plain = self._aead.decrypt(bytes(ciphertext[:_NONCE]), bytes(ciphertext[_NONCE:]), None)
        except (InvalidTag, ValueError) as exc:
            raise CheckpointError(TAMPERED) from exc
        return Decrypted(plain)

"""A software passkey: the authenticator and browser sides of WebAuthn, with a real P-256 key.

It makes what `navigator.credentials.create()` / `.get()` would give a page at `origin`, as
`PublicKeyCredential.toJSON()`: attestation "none", authenticator data with the RP id hash, flags and
signature counter, and an ES256 signature over authenticator data and the client data's hash.
"""
import base64
import hashlib
import json
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

USER_PRESENT, USER_VERIFIED, ATTESTED = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftPasskey:
    def __init__(self, origin: str):
        self.origin = origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.rp_id: str | None = None
        self.user_handle: bytes | None = None
        self.sign_count = 0

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin or self.origin,
                           "crossOrigin": False}).encode()

    def create(self, options: dict[str, Any], origin: str | None = None) -> dict[str, Any]:
        """The registration a browser would send for these creation options (their JSON form)."""
        assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
        self.rp_id = options["rp"]["id"]
        self.user_handle = unb64url(options["user"]["id"])
        auth_data = (hashlib.sha256(self.rp_id.encode()).digest() + bytes([USER_PRESENT | USER_VERIFIED | ATTESTED])
                     + struct.pack(">I", self.sign_count) + b"\0" * 16
                     + struct.pack(">H", len(self.credential_id)) + self.credential_id + self._cose_key())
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
            "response": {
                "clientDataJSON": b64url(self._client_data("webauthn.create", options["challenge"], origin)),
                "attestationObject": b64url(attestation), "transports": ["internal"],
            },
            "clientExtensionResults": {}, "authenticatorAttachment": "platform",
        }

    def get(self, options: dict[str, Any], origin: str | None = None, count: int | None = None) -> dict[str, Any]:
        """The assertion a browser would send for these request options; the counter grows by one (or is
        `count`, to act as a cloned authenticator)."""
        self.sign_count = self.sign_count + 1 if count is None else count
        auth_data = (hashlib.sha256((options.get("rpId") or self.rp_id).encode()).digest()
                     + bytes([USER_PRESENT | USER_VERIFIED]) + struct.pack(">I", self.sign_count))
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                "signature": b64url(signature), "userHandle": b64url(self.user_handle or b""),
            },
            "clientExtensionResults": {}, "authenticatorAttachment": "platform",
        }

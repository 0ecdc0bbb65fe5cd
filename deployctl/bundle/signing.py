"""ed25519 keys and the manifest's signature (manifest.sig: algorithm, key fingerprint, signature)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from deployctl.bundle.format import BundleError, VerificationFailed
from deployctl.errors import InputError
from deployctl.fsio import read_bounded

ALGORITHM = "ed25519"
KEY_MAX = 16 * 1024  # a PEM ed25519 key is about 120 bytes


def _crypto():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return serialization, ed25519


def keygen(private_path: Path, public_path: Path) -> str:
    """Write a new key pair (private key mode 0600); give the public key's fingerprint."""
    serialization, ed25519 = _crypto()
    for p in (private_path, public_path):
        if p.exists():
            raise InputError(f"{p} already exists", "choose another name; keys are never overwritten")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    folder = private_path.parent
    if not folder.is_dir():
        raise InputError(f"{private_path}: the folder {folder} does not exist", f"mkdir -p {folder} first")
    written: list[Path] = []
    try:
        for path, data, mode in ((private_path, private, 0o600), (public_path, public, 0o644)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as exc:
        for path in written:  # nothing half-written: no private key without its public half
            path.unlink(missing_ok=True)
        raise InputError(f"{exc.filename or private_path}: cannot write the key: {exc.strerror}") from None
    return fingerprint(public)


def fingerprint(public_pem: bytes) -> str:
    return "sha256:" + hashlib.sha256(public_pem.strip()).hexdigest()[:32]


def _load_private(path: Path):  # type: ignore[no-untyped-def]
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(read_bounded(path, KEY_MAX, "--sign key"), password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: not an unencrypted ed25519 private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"{path}: not an ed25519 key")
    return key


def public_pem(path: Path) -> bytes:
    serialization, ed25519 = _crypto()
    raw = read_bounded(path, KEY_MAX, "--pubkey")
    try:
        key = serialization.load_pem_public_key(raw)
    except ValueError as exc:
        raise InputError(f"{path}: not an ed25519 public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InputError(f"{path}: not an ed25519 public key")
    return raw


def public_of(private_key: Path) -> bytes:
    """Give the PEM public key of a private key file (an InputError when it is no ed25519 key)."""
    serialization, _ = _crypto()
    key = _load_private(private_key)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[no-any-return]


def sign(manifest: bytes, private_key: Path) -> bytes:
    """Give manifest.sig's bytes for these manifest bytes."""
    key = _load_private(private_key)
    pub = public_of(private_key)
    sig = {
        "algorithm": ALGORITHM,
        "key_fingerprint": fingerprint(pub),
        "signature": base64.b64encode(key.sign(manifest)).decode(),
    }
    return (json.dumps(sig, indent=2, sort_keys=True) + "\n").encode()


def check(
    manifest: bytes,
    signature: bytes | None,
    public_key: Path | None,
    insecure: bool,
    *,
    signed: str = "manifest.json",
    what: str = "manifest.sig",
) -> str:
    """Give how the manifest (or the `signed` bytes) was trusted, or raise BundleError with the reason it is not."""
    if insecure:
        return "signature NOT checked (--insecure-skip-signature)"
    if signature is None:
        raise BundleError(
            f"the bundle is not signed (no {what})", "get a signed bundle, or pass --insecure-skip-signature"
        )
    if public_key is None:
        raise BundleError(
            "the bundle is signed but no --pubkey was given", "pass --pubkey KEY.pub (the sender's public key)"
        )
    pub = public_pem(public_key)
    try:
        sig = json.loads(signature)
        raw = base64.b64decode(sig["signature"], validate=True)
        claimed = sig["key_fingerprint"]
        algorithm = sig["algorithm"]
    except (ValueError, KeyError, TypeError):
        raise VerificationFailed(f"{what} is malformed") from None
    if algorithm != ALGORITHM:
        raise VerificationFailed(
            f"{what} names the algorithm {str(algorithm)[:40]!r}; bundles are signed with {ALGORITHM}"
        )
    if claimed != fingerprint(pub):
        raise VerificationFailed(
            f"wrong key: the bundle was signed by {str(claimed)[:80]}, --pubkey {public_key} is {fingerprint(pub)}",
            "ask the sender for the public key that matches",
        )
    from cryptography.exceptions import InvalidSignature

    _, ed25519 = _crypto()
    key = _crypto()[0].load_pem_public_key(pub)
    assert isinstance(key, ed25519.Ed25519PublicKey)
    try:
        key.verify(raw, manifest)
    except InvalidSignature:
        raise VerificationFailed(f"{signed} was changed after it was signed: the bundle cannot be trusted") from None
    return f"signed by {claimed}"

"""TLS for the simulator (``fake-github --tls``): a local CA, and a server certificate it signs.

Clients set up for GitHub Enterprise Server speak https only (``gh`` with ``GH_HOST``,
go-github's enterprise client, Octokit), so the simulator must serve https with a certificate
they can be told to trust. :func:`ensure_certificates` keeps a self-signed CA in a folder and
reuses it while it is valid, so a CA a user already trusts (``SSL_CERT_FILE``, a system store)
keeps working across restarts; the server certificate it signs covers ``127.0.0.1``, ``::1``,
``localhost`` and the address the simulator listens on, one pair per address so simulators on
different addresses can share the folder. :func:`load_own_certificate` checks a certificate the
user brings instead. Private keys are written ``0600`` (in a ``0700`` folder) and never logged.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import os
import re
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
#: A CA lives ten years; a server certificate one (clients such as Apple's refuse longer ones).
CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=365)
#: A certificate this close to expiry is replaced rather than reused.
RENEW_BEFORE = datetime.timedelta(days=30)
#: Names every server certificate covers, whatever address the simulator listens on.
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
_UNSPECIFIED = {"0.0.0.0", "::", ""}  # noqa: S104 - names, not a bind


class TlsError(ValueError):
    """A certificate or key cannot be used; the message says which file and what to do."""


@dataclass(frozen=True)
class ServerTls:
    """What the simulator serves https with.

    ``ca_file`` is the CA clients must trust when the simulator made the certificate (None for
    a certificate the user brought); ``ca_created`` says this start made that CA anew.
    """

    certfile: Path
    keyfile: Path
    ca_file: Path | None = None
    ca_created: bool = False

    def ca_pem(self) -> str | None:
        """The CA certificate as PEM text, for the stand-in runner's JIT configuration."""
        return None if self.ca_file is None else self.ca_file.read_text(encoding="ascii")


def server_names(host: str) -> list[str]:
    """The names a certificate for a simulator listening on ``host`` covers, loopback first.

    On every address (``0.0.0.0``, ``::``) the machine's own name is added, since that is how
    other machines reach it; the unspecified address itself is kept because the simulator
    writes its listening URL into the JIT configurations it issues.
    """
    names = list(LOOPBACK_NAMES)
    extra = [host.strip("[]")]
    if host.strip("[]") in _UNSPECIFIED:
        extra.append(socket.gethostname())
    for name in extra:
        if name and name.lower() not in (known.lower() for known in names):
            names.append(name)
    return names


def ensure_certificates(
    folder: Path, host: str, *, now: datetime.datetime | None = None
) -> ServerTls:
    """The CA and a server certificate for ``host`` in ``folder``: reused when valid, else made.

    A CA that is missing, expired or expiring within :data:`RENEW_BEFORE` is made anew (the
    result says so); one that cannot be read, or whose key does not match, is an error rather
    than overwritten, since the folder may hold a CA the user put there on purpose. The server
    certificate is made again whenever it is not one this CA signed for these names.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    if folder.exists() and not folder.is_dir():
        raise TlsError(f"{folder} is not a folder: pass another --tls-dir")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(folder):
        ca_cert, ca_key, created = _ensure_ca(folder, now)
        certfile, keyfile = _ensure_server(folder, host, ca_cert, ca_key, now)
    return ServerTls(certfile, keyfile, folder / CA_FILE, created)


def load_own_certificate(certfile: Path, keyfile: Path) -> ServerTls:
    """Check a certificate and key the user brings: both readable PEM, matching, not expired."""
    certificate = _read_certificate(certfile)
    key = _read_key(keyfile)
    if not _same_key(certificate, key):
        raise TlsError(
            f"the key in {keyfile} does not belong to the certificate in {certfile}: "
            "give the key the certificate was issued for"
        )
    if certificate.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        raise TlsError(
            f"the certificate in {certfile} expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d}: give a current one"
        )
    return ServerTls(certfile, keyfile)


# ---------------------------------------------------------------------- the CA


def _ensure_ca(
    folder: Path, now: datetime.datetime
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes, bool]:
    cert_path, key_path = folder / CA_FILE, folder / CA_KEY_FILE
    if cert_path.exists() or key_path.exists():
        hint = f"delete {cert_path} and {key_path} to have a new CA made"
        try:
            certificate = _read_certificate(cert_path)
            key = _read_key(key_path)
        except TlsError as error:
            raise TlsError(f"{error}: fix it, or {hint}") from None
        if not _same_key(certificate, key) or not _is_ca(certificate):
            raise TlsError(f"{cert_path} and {key_path} are not a CA and its key: {hint}")
        if not isinstance(key, _ISSUER_KEYS):
            raise TlsError(f"{key_path}: a CA key must be RSA, EC or Ed25519: {hint}")
        if certificate.not_valid_after_utc - RENEW_BEFORE > now:
            _restrict(key_path)
            return certificate, key, False
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "runnerscale"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"runnerscale fake-github CA {_stamp(now)}"),
        ]
    )
    public = ca_key.public_key()
    certificate = (
        _builder(name, name, public, now, CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(key_path, _key_pem(ca_key), private=True)
    _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), private=False)
    return certificate, ca_key, True


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Signing only: certificates and CRLs for the CA, the TLS handshake for the server."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


# ---------------------------------------------------------------------- the server certificate


def _ensure_server(
    folder: Path,
    host: str,
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    now: datetime.datetime,
) -> tuple[Path, Path]:
    label = re.sub(r"[^A-Za-z0-9.-]", "_", host.strip("[]")) or "any"
    cert_path, key_path = folder / f"server-{label}.pem", folder / f"server-{label}-key.pem"
    names = server_names(host)
    if _server_reusable(cert_path, key_path, ca_cert, names, now):
        _restrict(key_path)
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[-1])])
    certificate = (
        _builder(subject, ca_cert.subject, key.public_key(), now, SERVER_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), private=False)
    return cert_path, key_path


def _server_reusable(
    cert_path: Path,
    key_path: Path,
    ca_cert: x509.Certificate,
    names: Sequence[str],
    now: datetime.datetime,
) -> bool:
    try:
        certificate = _read_certificate(cert_path)
        key = _read_key(key_path)
        certificate.verify_directly_issued_by(ca_cert)
    except (TlsError, ValueError, TypeError, InvalidSignature):
        return False
    try:
        covered = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return (
        _same_key(certificate, key)
        and set(covered.value) == set(_general_names(names))
        and certificate.not_valid_after_utc - RENEW_BEFORE > now
    )


# ---------------------------------------------------------------------- helpers

#: Keys a CA brought in the folder may have (those the certificate builder signs with).
_ISSUER_KEYS = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public: CertificatePublicKeyTypes,
    now: datetime.datetime,
    lifetime: datetime.timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # Backdated a little, so a client whose clock lags does not see "not yet valid".
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _same_key(certificate: x509.Certificate, key: PrivateKeyTypes) -> bool:
    def der(public: object) -> bytes:
        return public.public_bytes(  # type: ignore[attr-defined, no-any-return]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    try:
        return der(certificate.public_key()) == der(key.public_key())
    except (AttributeError, ValueError):
        return False


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as error:
        raise TlsError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError:
        raise TlsError(f"{path} is not a PEM certificate") from None


def _read_key(path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as error:
        raise TlsError(f"cannot read {path}: {error.strerror or error}") from None
    except TypeError:
        raise TlsError(f"{path} is an encrypted key: give it unencrypted (mode 0600)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError(f"{path} is not a PEM private key") from None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, content: bytes, *, private: bool) -> None:
    """Write atomically (a reader never sees half a file); a key is 0600 from the start."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _restrict(key_path: Path) -> None:
    """A reused key that others could read is made private again."""
    if key_path.stat().st_mode & 0o077:
        key_path.chmod(0o600)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise simulators starting at once on the same folder (one makes, the others reuse)."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _stamp(now: datetime.datetime) -> str:
    return now.strftime("%Y-%m-%d")

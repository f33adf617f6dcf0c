"""Who is calling the simulated GitHub, checked the way GitHub checks it.

Three kinds of caller: a personal access token (``Authorization: token T`` or ``Bearer T``),
a GitHub App authenticating as itself with an RS256 JWT signed by its private key (accepted
only on the ``/app`` endpoints and the installation look-ups), and an App installation using
an installation access token (``ghs_...``, one hour) obtained with that JWT. Anything else gets
GitHub's 401 body. Each caller also names the rate-limit budget it draws from.

A token is a fine-grained one (its answers say nothing of what it may do, and it may do what
the simulator serves) unless it was given scopes: then it is a classic token, whose scopes
the answers report and the operations check (:mod:`runnerscale.fakegithub.scopes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from runnerscale.fakegithub.scopes import parse_scopes
from runnerscale.fakegithub.world import ApiError, World

#: GitHub refuses App JWTs whose lifetime (exp - iat) exceeds ten minutes.
MAX_JWT_LIFETIME = 600
#: Clock drift GitHub tolerates on ``iat`` / ``exp``.
JWT_LEEWAY = 60


class CallerKind(StrEnum):
    ANONYMOUS = "anonymous"
    TOKEN = "token"  # a personal access token  # noqa: S105 - a kind, not a secret
    APP = "app"  # the App itself, by JWT
    INSTALLATION = "installation"  # an installation access token


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    #: The rate-limit budget this caller draws from (never contains the secret itself).
    identity: str
    installation_id: int | None = None
    #: For installation tokens: the login of the owner the installation belongs to.
    owner_login: str | None = None
    #: For a classic personal access token: the scopes it was given (None: not a classic
    #: token, so no scope is reported or checked).
    scopes: frozenset[str] | None = None


ANONYMOUS = Caller(CallerKind.ANONYMOUS, "anonymous")


def bad_credentials() -> ApiError:
    return ApiError(401, "Bad credentials")


def load_app_public_key(pem: str | bytes | Path) -> RSAPublicKey:
    """Accept the App's private key (as GitHub hands it out) or its public key, as PEM."""
    data = pem.read_bytes() if isinstance(pem, Path) else pem
    raw = data.encode() if isinstance(data, str) else data
    try:
        if b"PRIVATE KEY" in raw:
            private = serialization.load_pem_private_key(raw, password=None)
            if not isinstance(private, RSAPrivateKey):
                raise ValueError("the App key must be an RSA key")
            return private.public_key()
        public = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError) as error:
        raise ValueError(f"cannot read the App key as PEM: {error}") from None
    if not isinstance(public, RSAPublicKey):
        raise ValueError("the App key must be an RSA key")
    return public


class Authenticator:
    def __init__(
        self,
        world: World,
        tokens: tuple[str, ...] = (),
        app_id: int | None = None,
        app_public_key: RSAPublicKey | None = None,
        token_scopes: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        """``token_scopes`` makes the tokens it names classic tokens with those scopes."""
        if (app_id is None) != (app_public_key is None):
            raise ValueError("an App needs both its id and its key")
        scoped = dict(token_scopes or {})
        if not set(scoped) <= set(tokens):
            # Never name the token itself: it is a secret.
            raise ValueError("scopes were given for a token the simulator does not accept")
        self.world = world
        self._tokens = frozenset(tokens)
        self._scopes = {token: parse_scopes(scopes) for token, scopes in scoped.items()}
        self.app_id = app_id
        self._app_key = app_public_key

    def identify(self, authorization: str | None) -> Caller:
        """The caller behind an ``Authorization`` header; raises 401 for bad credentials."""
        if not authorization:
            return ANONYMOUS
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() not in ("token", "bearer") or not credential:
            raise bad_credentials()
        if credential in self._tokens:
            digest = hashlib.sha256(credential.encode()).hexdigest()[:12]
            return Caller(CallerKind.TOKEN, f"token:{digest}", scopes=self._scopes.get(credential))
        installation_token = self.world.valid_token(credential, "installation")
        if installation_token is not None:
            assert installation_token.installation_id is not None
            return Caller(
                CallerKind.INSTALLATION,
                f"installation:{installation_token.installation_id}",
                installation_id=installation_token.installation_id,
                owner_login=installation_token.scope,
            )
        if credential.count(".") == 2 and self._app_key is not None:
            return self._verify_jwt(credential)
        raise bad_credentials()

    def _verify_jwt(self, token: str) -> Caller:
        assert self._app_key is not None
        try:
            claims = jwt.decode(
                token,
                self._app_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"], "verify_iss": False},
                leeway=JWT_LEEWAY,
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the "
                "future time at which the assertion expires",
            ) from None
        except jwt.ImmatureSignatureError:
            raise ApiError(
                401,
                "'Issued at' claim ('iat') must be an Integer representing the time "
                "that the assertion was issued",
            ) from None
        except jwt.PyJWTError:
            raise ApiError(401, "A JSON web token could not be decoded") from None
        if str(claims.get("iss")) != str(self.app_id):
            raise ApiError(401, "'Issuer' claim ('iss') must be an Integer")
        if float(claims["exp"]) - float(claims["iat"]) > MAX_JWT_LIFETIME + JWT_LEEWAY:
            raise ApiError(
                401,
                "'Expiration time' claim ('exp') is too far in the future",
            )
        return Caller(CallerKind.APP, f"app:{self.app_id}")

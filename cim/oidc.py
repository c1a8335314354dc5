"""Optional OpenID Connect bearer tokens beside API keys.

A JWT in ``Authorization: Bearer ...`` is checked offline against the identity provider's
JWKS (a file or the JSON itself, from the settings: the server makes no network calls), its
issuer, audience, expiry and signature algorithm; the caller's role and clearance come from
configurable claims. Anything else in the header is an API key, looked up as before.
"""

# No postponed annotations: FastAPI resolves the wrapped dependency at definition time.
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from cim.access import KEY_PREFIX, Principal, Role
from cim.settings import OidcSettings
from layers.auth import _api_key, _bearer
from layers.errors import Unauthorized
from layers.model import Classification


class OidcConfigError(ValueError):
    """The configured JWKS cannot be read."""


def load_jwks(value: str) -> jwt.PyJWKSet:
    """The key set from a JSON text or from the file it names."""
    text = value if value.lstrip().startswith("{") else _read(Path(value))
    try:
        return jwt.PyJWKSet.from_dict(json.loads(text))
    except (ValueError, jwt.PyJWTError) as exc:
        raise OidcConfigError(f"CIM_OIDC_JWKS is not a usable JWKS: {exc}") from None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise OidcConfigError(f"CIM_OIDC_JWKS: cannot read {path}: {exc}") from None


def looks_like_jwt(token: str) -> bool:
    return not token.startswith(KEY_PREFIX) and token.count(".") == 2


class TokenVerifier:
    """Checks tokens against one key set and turns their claims into a principal."""

    def __init__(self, settings: OidcSettings) -> None:
        if settings.jwks is None:
            raise OidcConfigError("OIDC needs CIM_OIDC_JWKS")
        self.settings = settings
        self.keys = {key.key_id: key for key in load_jwks(settings.jwks).keys}

    def principal(self, token: str) -> Principal:
        s = self.settings
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            # A token without a kid is fine where the set holds a single key.
            key = self.keys.get(kid) if kid or len(self.keys) != 1 \
                else next(iter(self.keys.values()))
            if key is None:
                raise Unauthorized("the token is signed by a key this server does not know")
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=s.algorithms, audience=s.audience, issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp"] + (["iss"] if s.issuer else [])
                         + (["aud"] if s.audience else []),
                         "verify_aud": s.audience is not None})
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the bearer token is not valid here: {exc}") from None
        try:
            role = Role(claims.get(s.role_claim, s.default_role))
            clearance = Classification(claims.get(s.clearance_claim, s.default_clearance))
        except ValueError as exc:
            raise Unauthorized(f"the token's claims give no known role or clearance: {exc}") \
                from None
        name = claims.get(s.name_claim)
        if not isinstance(name, str) or not name:
            raise Unauthorized(f"the token has no {s.name_claim!r} claim to name its caller")
        return Principal(f"oidc:{name}", role, clearance)


def with_oidc(principal: Callable[..., Any],
              settings: OidcSettings) -> Callable[..., Awaitable[Principal]]:
    """The principal dependency that also takes OIDC bearer tokens."""
    verifier = TokenVerifier(settings)

    async def either(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        if bearer is not None and not api_key and looks_like_jwt(bearer.credentials):
            return verifier.principal(bearer.credentials)
        return await principal(request, bearer, api_key)

    return either

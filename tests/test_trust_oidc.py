"""OIDC bearer tokens: JWTs signed by a locally generated RSA key, checked against a JWKS
from the settings (a file or the JSON itself), with issuer, audience, expiry and the role
and clearance claims; API keys keep working beside them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import text

from cim.access import Role, create_key
from cim.app import create_app
from cim.oidc import OidcConfigError
from cim.settings import OidcSettings
from layers.model import Classification
from tests import test_features_api

city = test_features_api.city  # fixture
ISSUER, AUDIENCE = "https://id.city.example/realms/cim", "cim-api"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNER, STRANGER = rsa_key(), rsa_key()


def jwks(*keys: rsa.RSAPrivateKey) -> str:
    return json.dumps({"keys": [{**json.loads(RSAAlgorithm.to_jwk(k.public_key())),
                                 "kid": f"k{i}", "use": "sig", "alg": "RS256"}
                                for i, k in enumerate(keys)]})


def token(key=SIGNER, kid="k0", **claims) -> dict[str, str]:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300,
            **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return {"Authorization": "Bearer " + jwt.encode(body, key, "RS256", headers={"kid": kid})}


@pytest.fixture
def client(city, settings, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(jwks(SIGNER))
    oidc = OidcSettings(jwks=str(path), issuer=ISSUER, audience=AUDIENCE)
    with TestClient(create_app(settings.replace(oidc=oidc))) as client:
        yield client


def listed(client, headers) -> set[str]:
    response = client.get("/collections", headers=headers)
    assert response.status_code == 200, response.text
    return {c["id"] for c in response.json()["collections"]}


def test_claims_give_role_and_clearance_and_edits_are_audited_by_subject(client, city):
    editor = token(cim_role="editor", cim_clearance="internal")
    assert "drainage_pipes" in listed(client, editor)
    assert "drainage_pipes" not in listed(client, token())  # defaults: viewer, public
    patched = client.patch("/collections/buildings/items/t:B02", headers=editor,
                           json={"type": "Feature", "properties": {"height": 50.0}})
    assert patched.status_code == 200, patched.text
    assert client.patch("/collections/buildings/items/t:B02", headers=token(),
                        json={"type": "Feature", "properties": {"height": 1.0}}
                        ).status_code == 403
    with city.connect() as conn:
        assert conn.scalar(text("SELECT actor FROM cim.audit_log")) == "oidc:alice"


BAD = {
    "audience": token(aud="another-api"), "issuer": token(iss="https://evil.example"),
    "expired": token(exp=1), "no-expiry": token(exp=None), "foreign-key": token(key=STRANGER),
    "unknown-kid": token(kid="k9"), "no-subject": token(sub=None),
    "bad-role": token(cim_role="superuser"), "bad-clearance": token(cim_clearance="secret"),
    "alg-none": {"Authorization": "Bearer " + jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}, None,
        "none")},
    "garbage": {"Authorization": "Bearer a.b.c"},
}


def test_bad_tokens_are_refused(client):
    for case, headers in BAD.items():
        response = client.get("/collections", headers=headers)
        assert response.status_code == 401, (case, response.text)
        assert response.json()["code"] == "Unauthorized", case


def test_hs256_signed_with_the_public_key_is_refused(client):
    """The classic confusion: an HMAC token keyed with the RSA public key's bytes."""
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    public = SIGNER.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    signed = part({"alg": "HS256", "typ": "JWT", "kid": "k0"}) + "." + part(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 60,
         "cim_role": "admin"})
    mac = hmac.new(public, signed.encode(), hashlib.sha256).digest()
    forged = signed + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert client.get("/audit", headers={"Authorization": f"Bearer {forged}"}
                      ).status_code == 401


def test_api_keys_still_work_and_jwks_can_be_inline(city, settings):
    with city.begin() as conn:
        key = create_key(conn, "k", Role.viewer, Classification.internal)
    oidc = OidcSettings(jwks=jwks(STRANGER, SIGNER), issuer=ISSUER, audience=AUDIENCE)
    with TestClient(create_app(settings.replace(oidc=oidc))) as client:
        assert "drainage_pipes" in listed(client, {"Authorization": f"Bearer {key}"})
        assert "assets" in listed(client, token(kid="k1", cim_clearance="restricted"))


def test_an_unreadable_jwks_stops_the_app_from_starting(settings, tmp_path):
    for value in [str(tmp_path / "missing.json"), "{not json", '{"keys": 3}']:
        with pytest.raises(OidcConfigError, match="CIM_OIDC_JWKS"):
            create_app(settings.replace(oidc=OidcSettings(jwks=value)))

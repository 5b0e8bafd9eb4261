"""Terminal tokens: a minted token verifies; anything forged, stale or out of scope does not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest

from gateway.tokens import (
    DEFAULT_TTL_S,
    FORBIDDEN,
    UNAUTHORIZED,
    TerminalGrant,
    TokenRejected,
    mint_token,
    verify_token,
)

SECRET = "s" * 64
OTHER_SECRET = "o" * 64
PROJECT, TERMINAL = "proj-1", "term-1"
NOW = 1_700_000_000.0


def claims(**changes) -> dict:
    """Valid claims for PROJECT/TERMINAL, with fields replaced (or removed, when given ``...``)."""
    data = {"sub": "ada", "project": PROJECT, "terminal": TERMINAL,
            "exp": int(NOW) + 60, "jti": "jti-1"}
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(payload: dict, *, header: dict | None = None, secret: str = SECRET,
          digest=hashlib.sha256) -> str:
    """A JWT built by hand, so the header and the signature can be anything."""
    head = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), digest).digest()
    return f"{head}.{body}.{b64(signature)}"


def verify(token: str | None, *, project_id: str = PROJECT, terminal_id: str = TERMINAL,
           now: float = NOW) -> TerminalGrant:
    return verify_token(SECRET, token, project_id=project_id, terminal_id=terminal_id, now=now)


def rejected(token: str | None, **kwargs) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        verify(token, **kwargs)
    return info.value


# The round trip.


def test_minted_token_verifies_into_a_grant():
    token = mint_token(SECRET, project_id=PROJECT, terminal_id=TERMINAL, user="ada", ttl_s=120,
                       now=NOW)

    grant = verify(token)

    assert grant.user == "ada"
    assert grant.project_id == PROJECT
    assert grant.terminal_id == TERMINAL
    assert grant.expires_at == int(NOW) + 120
    assert grant.token_id
    assert str(grant) == f"ada@{PROJECT}/{TERMINAL}"


def test_minted_token_is_hs256_with_every_required_claim():
    token = mint_token(SECRET, project_id=PROJECT, terminal_id=TERMINAL, now=NOW)

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"sub", "project", "terminal", "exp", "jti"}
    assert payload["sub"] == "developer"
    assert payload["exp"] == int(NOW) + DEFAULT_TTL_S


def test_each_minted_token_has_its_own_id():
    ids = {
        verify(mint_token(SECRET, project_id=PROJECT, terminal_id=TERMINAL, now=NOW)).token_id
        for _ in range(20)
    }

    assert len(ids) == 20


def test_token_from_any_hs256_library_verifies():
    grant = verify(jwt.encode(claims(), SECRET, algorithm="HS256"))

    assert grant == TerminalGrant(user="ada", project_id=PROJECT, terminal_id=TERMINAL,
                                  token_id="jti-1", expires_at=int(NOW) + 60)


# Missing, malformed, expired: 4401.


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token_is_unauthorized(token):
    error = rejected(token)

    assert error.code == UNAUTHORIZED == 4401
    assert error.reason == "missing token"


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "a.b", "...", "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_malformed_token_is_unauthorized(token):
    assert rejected(token).code == UNAUTHORIZED


def test_token_expires_at_its_exp():
    token = mint_token(SECRET, project_id=PROJECT, terminal_id=TERMINAL, ttl_s=60, now=NOW)

    assert verify(token, now=NOW + 59.5).expires_at == int(NOW) + 60
    error = rejected(token, now=NOW + 60)
    assert error.code == UNAUTHORIZED
    assert error.reason == "token expired"
    assert rejected(token, now=NOW + 3600).code == UNAUTHORIZED


def test_expiry_uses_the_callers_clock_not_the_wall_clock():
    # Expired long ago by the wall clock, valid by the clock the caller passes in.
    token = mint_token(SECRET, project_id=PROJECT, terminal_id=TERMINAL, ttl_s=60, now=1000.0)

    assert verify(token, now=1030.0).expires_at == 1060


# Forgery: 4401.


def test_token_signed_with_another_secret_is_unauthorized():
    token = mint_token(OTHER_SECRET, project_id=PROJECT, terminal_id=TERMINAL, now=NOW)

    assert rejected(token).code == UNAUTHORIZED


def test_unsigned_alg_none_token_is_unauthorized():
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())

    assert rejected(f"{head}.{body}.").code == UNAUTHORIZED


def test_alg_none_header_over_a_valid_signature_is_unauthorized():
    # A correct HS256 signature, but the header claims "none": the header is signed too.
    token = forge(claims(), header={"alg": "none", "typ": "JWT"})

    assert rejected(token).code == UNAUTHORIZED


def test_hs512_token_with_the_right_secret_is_unauthorized():
    token = jwt.encode(claims(), SECRET, algorithm="HS512")

    assert rejected(token).code == UNAUTHORIZED


def test_hs512_header_with_an_hs512_signature_built_by_hand_is_unauthorized():
    token = forge(claims(), header={"alg": "HS512", "typ": "JWT"}, digest=hashlib.sha512)

    assert rejected(token).code == UNAUTHORIZED


def test_rs256_header_with_an_hmac_signature_is_unauthorized():
    # Algorithm confusion: the secret used as an HMAC key under an RS256 header.
    token = forge(claims(), header={"alg": "RS256", "typ": "JWT"})

    assert rejected(token).code == UNAUTHORIZED


def test_hand_built_hs256_token_verifies():
    # The control for the forgeries above: the same builder with an honest header works.
    assert verify(forge(claims())).user == "ada"


def test_altered_payload_is_unauthorized_not_forbidden():
    token = mint_token(SECRET, project_id=PROJECT, terminal_id=TERMINAL, now=NOW)
    head, _, signature = token.split(".")
    payload = jwt.decode(token, options={"verify_signature": False})
    payload["terminal"] = "term-2"
    tampered = f"{head}.{b64(json.dumps(payload).encode())}.{signature}"

    # Signature checked before scope: the tampered token is bad (4401), even for term-2.
    assert rejected(tampered, terminal_id="term-2").code == UNAUTHORIZED


def test_truncated_signature_is_unauthorized():
    token = mint_token(SECRET, project_id=PROJECT, terminal_id=TERMINAL, now=NOW)

    assert rejected(token[:-4]).code == UNAUTHORIZED


# Scope: 4403.


def test_token_for_another_project_is_forbidden():
    token = mint_token(SECRET, project_id="proj-2", terminal_id=TERMINAL, now=NOW)

    error = rejected(token)

    assert error.code == FORBIDDEN == 4403
    assert error.reason == "token is for another terminal"


def test_token_for_another_terminal_is_forbidden():
    token = mint_token(SECRET, project_id=PROJECT, terminal_id="term-2", now=NOW)

    assert rejected(token).code == FORBIDDEN


def test_token_for_same_terminal_id_in_another_project_is_forbidden():
    token = mint_token(SECRET, project_id="proj-2", terminal_id=TERMINAL, now=NOW)

    assert verify(token, project_id="proj-2").project_id == "proj-2"
    assert rejected(token, project_id=PROJECT).code == FORBIDDEN


def test_expired_token_for_another_terminal_is_unauthorized():
    token = mint_token(SECRET, project_id=PROJECT, terminal_id="term-2", ttl_s=60, now=NOW)

    assert rejected(token, now=NOW + 61).code == UNAUTHORIZED


# Claims: 4401.


@pytest.mark.parametrize("claim", ["sub", "project", "terminal", "jti", "exp"])
def test_missing_claim_is_unauthorized(claim):
    assert rejected(forge(claims(**{claim: ...}))).code == UNAUTHORIZED


@pytest.mark.parametrize("claim", ["sub", "project", "terminal", "jti", "exp"])
def test_null_claim_is_unauthorized(claim):
    assert rejected(forge(claims(**{claim: None}))).code == UNAUTHORIZED


@pytest.mark.parametrize("claim", ["sub", "project", "terminal", "jti"])
def test_empty_string_claim_is_unauthorized(claim):
    # An empty project or terminal is a bad token (4401), not a scope mismatch (4403).
    assert rejected(forge(claims(**{claim: ""}))).code == UNAUTHORIZED


@pytest.mark.parametrize("claim", ["sub", "project", "terminal", "jti"])
@pytest.mark.parametrize("value", [123, 1.5, True, ["x"], {"id": "x"}])
def test_non_string_claim_is_unauthorized(claim, value):
    assert rejected(forge(claims(**{claim: value}))).code == UNAUTHORIZED


@pytest.mark.parametrize("value", [str(int(NOW) + 60), True, ["x"], {"at": 1}])
def test_non_numeric_exp_is_unauthorized(value):
    assert rejected(forge(claims(exp=value))).code == UNAUTHORIZED


def test_fractional_exp_is_accepted_and_truncated():
    grant = verify(forge(claims(exp=NOW + 60.75)))

    assert grant.expires_at == int(NOW) + 60


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_exp_is_unauthorized(value):
    # json (and so PyJWT) reads Infinity and NaN; neither is an expiry time.
    assert rejected(forge(claims(exp=value))).code == UNAUTHORIZED


def test_claims_of_the_wrong_scope_and_type_are_unauthorized_first():
    # A non-string project is a bad token, even though it also does not match.
    assert rejected(forge(claims(project=1))).code == UNAUTHORIZED

"""Terminal tokens: short-lived, single-use JWTs (HS256) naming one project's terminal.

Any web backend can mint one with a JWT library and the shared ``GATEWAY_SECRET``:
claims ``sub`` (user), ``project``, ``terminal``, ``exp`` and ``jti``. Single use is
enforced by the gateway (it remembers each ``jti`` until the token expires).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
DEFAULT_TTL_S = 300
REQUIRED_CLAIMS = ("sub", "project", "terminal", "exp", "jti")
# Close codes: the token itself is bad (4401) or is good but not for this terminal (4403).
UNAUTHORIZED, FORBIDDEN = 4401, 4403


class TokenRejected(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class TerminalGrant:
    user: str
    project_id: str
    terminal_id: str
    token_id: str
    expires_at: int

    def __str__(self) -> str:
        return f"{self.user}@{self.project_id}/{self.terminal_id}"


def mint_token(secret: str, *, project_id: str, terminal_id: str, user: str = "developer",
               ttl_s: int = DEFAULT_TTL_S, now: float) -> str:
    claims = {
        "sub": user,
        "project": project_id,
        "terminal": terminal_id,
        "exp": int(now + ttl_s),
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str | None, *, project_id: str, terminal_id: str,
                 now: float) -> TerminalGrant:
    """Check signature, expiry, claims and scope; raise ``TokenRejected`` otherwise.

    Single use is not checked here: that needs the shared store (see ``TokenLedger``).
    """
    if not token:
        raise TokenRejected(UNAUTHORIZED, "missing token")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM],
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": False,
                     "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(UNAUTHORIZED, f"invalid token: {exc}") from None
    # Expiry is checked against the caller's clock, so tests can use a virtual one.
    expires = claims["exp"]
    if (isinstance(expires, bool) or not isinstance(expires, int | float)
            or not math.isfinite(expires) or expires <= now):
        raise TokenRejected(UNAUTHORIZED, "token expired")
    not_before = claims.get("nbf")
    if not_before is not None and (not isinstance(not_before, int | float)
                                   or not math.isfinite(not_before) or not_before > now):
        raise TokenRejected(UNAUTHORIZED, "token not valid yet")
    for claim in ("sub", "project", "terminal", "jti"):
        if not isinstance(claims[claim], str) or not claims[claim]:
            raise TokenRejected(UNAUTHORIZED, f"claim {claim!r} must be a non-empty string")
    if claims["project"] != project_id or claims["terminal"] != terminal_id:
        raise TokenRejected(FORBIDDEN, "token is for another terminal")
    return TerminalGrant(
        user=claims["sub"], project_id=claims["project"], terminal_id=claims["terminal"],
        token_id=claims["jti"], expires_at=int(claims["exp"]),
    )

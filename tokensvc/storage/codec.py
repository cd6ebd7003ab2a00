"""Serialisation of records for stores that keep bytes (Redis) or JSON columns (Postgres)."""

from __future__ import annotations

from typing import Any

import orjson

from tokensvc.models import CodeRecord, Grant


def grant_to_dict(grant: Grant) -> dict[str, Any]:
    return {
        "grant_id": grant.grant_id,
        "client_id": grant.client_id,
        "sub": grant.sub,
        "scope": grant.scope,
        "auth_time": grant.auth_time,
        "acr": grant.acr,
        "amr": list(grant.amr) if grant.amr is not None else None,
        "sid": grant.sid,
        "claims": grant.claims,
        **({"resources": list(grant.resources)} if grant.resources else {}),
    }


def grant_from_dict(data: dict[str, Any]) -> Grant:
    amr = data.get("amr")
    return Grant(
        grant_id=data["grant_id"],
        client_id=data["client_id"],
        sub=data["sub"],
        scope=data["scope"],
        auth_time=int(data["auth_time"]),
        acr=data.get("acr"),
        amr=tuple(amr) if amr is not None else None,
        sid=data.get("sid"),
        claims=data.get("claims") or {},
        resources=tuple(data.get("resources") or ()),
    )


def dump_code(record: CodeRecord) -> bytes:
    return orjson.dumps(
        {
            "grant": grant_to_dict(record.grant),
            "redirect_uri": record.redirect_uri,
            "expires_at": record.expires_at,
            "nonce": record.nonce,
            "code_challenge": record.code_challenge,
            "code_challenge_method": record.code_challenge_method,
            **({"dpop_jkt": record.dpop_jkt} if record.dpop_jkt else {}),
        }
    )


def load_code(raw: bytes) -> CodeRecord:
    data = orjson.loads(raw)
    return CodeRecord(
        grant=grant_from_dict(data["grant"]),
        redirect_uri=data["redirect_uri"],
        expires_at=data["expires_at"],
        nonce=data.get("nonce"),
        code_challenge=data.get("code_challenge"),
        code_challenge_method=data.get("code_challenge_method"),
        dpop_jkt=data.get("dpop_jkt"),
    )

"""What a token request proved possession of, and so what its tokens are bound to (RFC 7800
`cnf`; RFC 8705 §3 certificate-bound tokens; RFC 9449 §6 DPoP-bound tokens).

A request without such proof carries the shared `NO_BINDING`, so the common case allocates
nothing. Every field is optional: a later kind of proof (a DPoP key's `jkt`, RFC 9449) is one
more field here and one more member of `cnf`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes


@dataclass(frozen=True, slots=True)
class Binding:
    # RFC 8705 §3.1: base64url (no padding) SHA-256 of the DER client certificate.
    x5t_s256: str | None = None
    # RFC 9449 §6.1: the RFC 7638 thumbprint of the DPoP proof's key.
    jkt: str | None = None

    def cnf(self) -> dict[str, str]:
        """The token's `cnf` claim (RFC 7800 §3.1); empty when nothing is bound."""
        claim: dict[str, str] = {}
        if self.x5t_s256 is not None:
            claim["x5t#S256"] = self.x5t_s256
        if self.jkt is not None:
            claim["jkt"] = self.jkt
        return claim

    @property
    def token_type(self) -> str:
        """RFC 9449 §5: a DPoP-bound access token's type is DPoP, any other's Bearer."""
        return "Bearer" if self.jkt is None else "DPoP"

    def admits(self, proven: Binding) -> bool:
        """Does a request that proved `proven` satisfy this (stored) binding? Every field
        this binding sets must be proven again, with the same value."""
        return (self.x5t_s256 is None or self.x5t_s256 == proven.x5t_s256) and (
            self.jkt is None or self.jkt == proven.jkt
        )


NO_BINDING = Binding()


def x5t_s256(certificate: x509.Certificate) -> str:
    """RFC 8705 §3.1 `x5t#S256`: the certificate's SHA-256 thumbprint, base64url."""
    digest = certificate.fingerprint(hashes.SHA256())
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@lru_cache(maxsize=1024)
def certificate_binding(certificate: x509.Certificate) -> Binding:
    """The binding of a request that showed `certificate`. Remembered per certificate: a
    client on a kept-alive connection shows the same one on every request, and the thumbprint
    costs more than the rest of the certificate work of a request (measured with
    `python -m benchmarks tls`)."""
    return Binding(x5t_s256=x5t_s256(certificate))

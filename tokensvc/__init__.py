"""tokensvc: an OAuth 2.0 / OpenID Connect token-issuance service."""

__version__ = "0.1.0"

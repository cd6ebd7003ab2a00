"""Signing out (OIDC RP-Initiated Logout 1.0, Back-Channel Logout 1.0): what the token
service does when a browser session ends. The login front-end only asks for it."""

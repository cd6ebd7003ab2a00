"""Keys (JWKS load, rotate, publish) and the tokens signed with them."""

"""The login front-end: /authorize, sign-in and consent; it mints codes only through the
token service's internal API and holds no signing keys (see tests/unit/test_import_direction.py)."""

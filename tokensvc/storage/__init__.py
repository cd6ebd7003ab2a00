"""Storage behind protocols (`storage.protocols`); `storage.stores.open_stores` picks backends.

This package module imports nothing, so the login front-end can import the user store alone.
"""

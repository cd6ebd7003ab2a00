"""aiohttp glue: one `Application` per listener, so internal routes never exist publicly."""

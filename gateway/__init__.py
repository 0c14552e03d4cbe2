"""The aiohttp gateway: auth, the task endpoints and the SSE stream (not built yet)."""

"""The aiohttp gateway: auth, the task endpoints, and the live SSE stream of each task."""

"""aiohttp apps at the edge: parse and validate, tell actors through the bridge, map errors."""

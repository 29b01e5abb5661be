"""Serving: the HTTP API (``serving.http``), the MCP server (``serving.mcp``) and the chat page (``serving.chat``),
for people and other agents. Nothing below this package imports it."""

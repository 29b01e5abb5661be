"""The MCP server: SAM 3 and the agent as tools for other agents (stdio or streamable HTTP)."""

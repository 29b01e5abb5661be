"""The HTTP API (FastAPI): segmentation, refinement, the agent, video sessions, health and metrics."""

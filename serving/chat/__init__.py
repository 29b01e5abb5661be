"""The chat page and its conversation store (SQLite, through the graph's checkpointer)."""

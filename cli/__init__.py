"""The ``sam3-agent`` command line: one parser, shared option groups, lazy imports."""

"""Command line: ``python -m jtp_core tag|caption|heatmap``."""

"""JSON Schemas of every record the pipeline writes; shipped as ``streams.schemas`` (pyproject.toml)."""

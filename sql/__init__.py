"""The ClickHouse schema (migrations/) and the analytics questions (queries/, fragments/).

Shipped inside the package as ``streams.sql`` (pyproject.toml maps this directory); code finds the
files through ``streams.resources``, never by a path relative to the source tree.
"""

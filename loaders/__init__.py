"""telemed-elt loaders: thin jobs that move source data into raw Postgres tables."""

__version__ = "0.1.0"

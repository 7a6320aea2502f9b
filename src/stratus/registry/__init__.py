"""The model registry: models, immutable versions of their artifacts, flavors, aliases, cards."""

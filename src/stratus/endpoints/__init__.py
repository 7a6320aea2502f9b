"""Serving endpoints: the resource, the controller that reconciles it, and the gateway."""

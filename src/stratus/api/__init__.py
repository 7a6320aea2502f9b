"""The app factory: builds the platform from settings and mounts every service's router."""

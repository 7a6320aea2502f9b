"""Secrets: named, versioned values of a project, encrypted under its data key."""

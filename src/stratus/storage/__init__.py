"""Object storage: per-project buckets of versioned, encrypted, content-addressed objects."""

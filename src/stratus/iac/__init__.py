"""Infrastructure as code: resources declared in files, planned against live state, applied."""

"""Identity and access: projects, users, service accounts, API keys, roles, the audit log."""

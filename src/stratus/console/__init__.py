"""The web console: server-rendered pages over the platform's services
(docs/architecture.md, "Web console")."""

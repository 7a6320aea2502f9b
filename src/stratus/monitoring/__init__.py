"""Monitoring: data capture, drift and performance monitors, alert rules, notifications."""

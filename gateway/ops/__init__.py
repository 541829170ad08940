"""The operator's surface: admin API, dashboard, health and metrics, logs, and the watchers
(config reload, key refresh).
"""

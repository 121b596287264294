"""Health scores, alerts, ``/api/health``, ``/api/admin/diagnostics`` and ``/metrics``."""

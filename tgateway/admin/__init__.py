"""Administration and moderation: the block list, per-user limits and bans, the admin's actions
(with their audit log) and the ``/api/admin/`` routes."""

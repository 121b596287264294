"""Administration and moderation: the admin's actions (with their audit log) and the
``/api/admin/`` routes. What they change (the block list, per-user limits and bans) lives with
the storage: :mod:`tgateway.storage.policy`."""

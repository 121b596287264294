"""Retention: expired files, inactive users, bytes without rows and rows without bytes, the chunk
cache and the database's upkeep (issue 18). ``core`` (rules), ``runner`` (one run), ``routes``
(``/api/admin/cleanup``), ``service`` (the component)."""

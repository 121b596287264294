"""The HTTP toolkit shared by the gateway's routes (``tgateway.web``) and Blossom
(``tgateway.blossom``): streamed request bodies, multipart, ranges, sending stored files, the
JSON error shape, mounts, path converters and auth declared on a route. It knows no route of
its own; nothing here imports ``tgateway.web`` or ``tgateway.blossom``."""

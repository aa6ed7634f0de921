"""The asynchronous front of the gateway (DESIGN section 1): an ASGI app answering the data-plane
routes on the event loop and handing every other request to Django's WSGI app on a thread pool."""

"""The HTTP edge: routes, authentication hook, error mapping, OpenAPI and /docs."""

"""The HTTP face: create_app(settings) serves the JSON API (and, later, the pages) over the studio services."""

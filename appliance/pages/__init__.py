"""Web pages for people with a browser: the service list, a form per service, job pages.

Every page is rendered by the web process from the same catalogue and store as the API
and works without JavaScript; the script and stylesheet are static files the proxy
serves (``/static/``), and only improve the pages (live conditions, live job state).
"""

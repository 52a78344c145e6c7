"""The park security console (``parkwatch serve``): server-rendered pages for operators,
auditors and enterprise users, and the enterprise API (``/api/v1``), over the SQLite store.

Modules: :mod:`.app` (the application factory, security headers), :mod:`.deps` (store per
request, login sessions, roles, CSRF), :mod:`.web` (pages), :mod:`.api` (enterprise API).
Static assets ship in ``static/`` and templates in ``templates/``: nothing is fetched at run
time (park machines have no internet).
"""

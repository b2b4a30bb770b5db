"""The web layer: the previous system's REST API on Starlette. Never imports the
scheduler, runners or docker: it records jobs in MongoDB and wakes the scheduler."""

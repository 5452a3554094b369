"""The server's side of the process: gunicorn's worker and the listening sockets. The master process loads
this package without the app (each worker loads its own), so nothing here imports Flask or the app's modules."""

"""The engine as a service: one per home, owning everything that runs; the CLI and the console are its clients
over a Unix socket in the home (protocol), started on demand (client), with a run history (history, runs) and an
audit of who changed what (audit)."""

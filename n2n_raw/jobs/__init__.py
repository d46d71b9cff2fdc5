"""What a user asks for, one module per job: prepare, fit, submit, demo, export. Jobs use the engine; the engine
never calls a job, and no job imports the CLI."""

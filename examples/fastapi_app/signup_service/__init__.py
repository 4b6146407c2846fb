"""A small FastAPI service: signing up writes a user and enqueues a welcome email in one
transaction; a worker sends the email and marks the user as welcomed."""

"""A tiny application that keeps its own tables next to the job queue schema."""

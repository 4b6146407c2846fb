"""In-memory stand-ins for the database, for unit tests of parts that take a store."""

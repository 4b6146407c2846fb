"""Add a job in the same transaction as a business write.

A sign-up creates a ``User`` row and a job that sends the welcome email. Both are written
in one transaction: if the transaction commits, the user exists *and* the email will be sent;
if it rolls back, neither happens, and no worker is woken.

Run it with the database in ``$DATABASE_URL`` (it creates the ``users`` table and installs
the job queue schema if they are missing)::

    DATABASE_URL=postgresql://postgres@127.0.0.1/postgres \
        python examples/enqueue_in_transaction.py ada@example.com

Any worker started with ``tasks=[SendWelcomeEmail]`` then runs the job (see
``examples/app_worker.py`` for a worker entry point).
"""

from __future__ import annotations

import os
import sys
from typing import ClassVar

from sqlalchemy import URL, String, create_engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqlalchemy_graphile import JobHelpers, JobSpec, Task, WorkerContext, migrations


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)


class SendWelcomeEmail(Task):
    """The job: its fields are the payload stored with it."""

    IDENTIFIER: ClassVar[str] = "send_welcome_email"
    user_id: int
    email: str

    async def run(self, ctx: WorkerContext) -> None:
        ctx.logger.info("sending the welcome email to %s (user %d)", self.email, self.user_id)


def sign_up(session: Session, email: str) -> tuple[int, int]:
    """Create the user and enqueue the email, in the caller's transaction. Returns the user
    id and the job id. Nothing is committed here."""
    user = User(email=email)
    session.add(user)
    session.flush()  # assigns user.id, still inside the transaction
    job = JobHelpers(session).add_job(
        SendWelcomeEmail(user_id=user.id, email=email),
        JobSpec(queue_name="mail", job_key=f"welcome:{user.id}", max_attempts=5),
    )
    return user.id, job.id


def sync_database_url(url: str) -> URL:
    """A plain ``postgresql://`` URL uses psycopg 3 (SQLAlchemy's default is psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def main(email: str) -> None:
    engine = create_engine(sync_database_url(os.environ["DATABASE_URL"]))
    try:
        # One-off set-up; an application would use its Alembic history instead.
        with engine.begin() as connection:
            Base.metadata.create_all(connection)
            migrations.install(connection, "graphile_worker")

        with Session(engine) as session, session.begin():
            user_id, job_id = sign_up(session, email)
        # Committed: the user row and the job are now visible together.
        print(f"user {user_id} <{email}> created; welcome email job {job_id} queued")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ada@example.com")

"""The service's tasks, and the extension they use. The web app and the worker process
both import this module."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sqlalchemy_graphile import BatchTask, Task, WorkerContext

from .models import User

logger = logging.getLogger("signup_service")


class Mailer:
    """Sends mail. This one writes it to the log; put your mail service's client here."""

    async def send(self, to: str, subject: str) -> None:
        logger.info("mail to %s: %s", to, subject)


@dataclass(frozen=True)
class Services:
    """What the tasks need from the process that runs them (an extension of the worker)."""

    sessions: async_sessionmaker[AsyncSession]
    mailer: Mailer


class SendWelcomeEmail(Task):
    IDENTIFIER: ClassVar[str] = "send_welcome_email"
    user_id: int
    email: str

    async def run(self, ctx: WorkerContext) -> None:
        services = ctx.get_ext(Services)
        if services is None:
            raise RuntimeError("the worker was started without the Services extension")
        await services.mailer.send(self.email, "Welcome!")
        async with services.sessions() as session, session.begin():
            user = await session.get(User, self.user_id)
            if user is not None:
                user.welcomed_at = datetime.now(UTC)


def jobs() -> list[type[Task] | type[BatchTask]]:
    """Every task type the service runs."""
    return [SendWelcomeEmail]

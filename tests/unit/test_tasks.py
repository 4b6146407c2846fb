"""Task and BatchTask classes: the checks made when a class is defined, and the payload model."""

from __future__ import annotations

from typing import Any, ClassVar

import pydantic
import pytest

from sqlalchemy_graphile import BatchTask, BatchTaskResult, InvalidTaskError, Task
from sqlalchemy_graphile.context import WorkerContext
from sqlalchemy_graphile.tasks import check_task_type, is_batch_task


class SendEmail(Task):
    IDENTIFIER: ClassVar[str] = "send_email"
    to: str
    subject: str = "Hello"

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Resize(Task):
    IDENTIFIER: ClassVar[str] = "resize"
    width: int

    def run(self, ctx: WorkerContext) -> None:  # a plain def is allowed
        return None


class Notify(BatchTask):
    IDENTIFIER: ClassVar[str] = "notify"
    user_id: str

    @classmethod
    async def run_batch(cls, items: list[Notify], ctx: WorkerContext) -> None:
        return None


class Base(Task):
    """A base without IDENTIFIER, shared by concrete tasks."""

    tenant: str


class Concrete(Base):
    IDENTIFIER: ClassVar[str] = "concrete"

    async def run(self, ctx: WorkerContext) -> None:
        return None


def test_identifier_is_the_class_attribute_and_not_a_field() -> None:
    assert SendEmail.task_identifier() == "send_email"
    assert "IDENTIFIER" not in SendEmail.model_fields
    assert SendEmail(to="a").model_dump() == {"to": "a", "subject": "Hello"}


def test_unknown_keys_in_a_stored_payload_are_ignored() -> None:
    task = SendEmail.model_validate_json('{"to": "a", "added_later": [1, 2]}')
    assert task == SendEmail(to="a")


def test_missing_required_field_fails_validation() -> None:
    with pytest.raises(pydantic.ValidationError, match="to"):
        SendEmail.model_validate_json("{}")


def test_inherited_fields_and_abstract_bases() -> None:
    assert Concrete(tenant="t").model_dump() == {"tenant": "t"}
    with pytest.raises(InvalidTaskError, match="no IDENTIFIER"):
        Base.task_identifier()
    assert check_task_type(Concrete) is Concrete
    with pytest.raises(InvalidTaskError, match="no IDENTIFIER"):
        check_task_type(Base)


@pytest.mark.parametrize(
    ("identifier", "message"),
    [("", "empty"), ("x" * 129, "129"), ("a\x00b", "NUL"), (7, "str")],
)
def test_bad_identifier_is_refused_when_the_class_is_created(identifier: Any, message: str) -> None:
    with pytest.raises(InvalidTaskError, match=message):

        class Bad(Task):
            IDENTIFIER: ClassVar[Any] = identifier

            async def run(self, ctx: WorkerContext) -> None:
                return None


def test_identifier_may_be_128_characters_of_any_script() -> None:
    class Long(Task):
        IDENTIFIER: ClassVar[str] = "é" * 127 + "😀"

        async def run(self, ctx: WorkerContext) -> None:
            return None

    assert len(Long.task_identifier()) == 128


def test_task_must_implement_run() -> None:
    with pytest.raises(InvalidTaskError, match="must implement run"):

        class NoRun(Task):
            IDENTIFIER: ClassVar[str] = "no_run"


def test_batch_task_must_implement_run_batch_as_a_classmethod() -> None:
    with pytest.raises(InvalidTaskError, match="must implement run_batch"):

        class NoRunBatch(BatchTask):
            IDENTIFIER: ClassVar[str] = "no_run_batch"

    with pytest.raises(InvalidTaskError, match="must be a classmethod"):

        class NotClassmethod(BatchTask):
            IDENTIFIER: ClassVar[str] = "not_classmethod"

            async def run_batch(self, items: list[Any], ctx: WorkerContext) -> None:  # type: ignore[override]
                return None


def test_check_task_type_and_is_batch_task() -> None:
    assert check_task_type(SendEmail) is SendEmail
    assert check_task_type(Notify) is Notify
    assert is_batch_task(Notify)
    assert not is_batch_task(SendEmail)
    for bad in (Task, BatchTask, SendEmail(to="a"), dict, "send_email"):
        with pytest.raises(InvalidTaskError, match="not a Task or BatchTask subclass"):
            check_task_type(bad)


def test_base_run_raises_not_implemented() -> None:
    class Partial(Base):
        pass

    with pytest.raises(NotImplementedError):
        Partial(tenant="t").run(None)  # type: ignore[arg-type]


# --- BatchTaskResult -----------------------------------------------------------------------------


def test_batch_task_result() -> None:
    assert BatchTaskResult.all_succeeded().failed == {}
    error = ValueError("bounced")
    result = BatchTaskResult.from_outcomes([None, error, "no mailbox", None])
    assert result.failed == {1: error, 2: "no mailbox"}
    assert "bounced" in repr(result)
    with pytest.raises(ValueError, match="non-negative"):
        BatchTaskResult({-1: "x"})
    with pytest.raises(TypeError, match="exception or a string"):
        BatchTaskResult({0: 42})  # type: ignore[dict-item]

"""Operator feedback on groups, and how it moves strategy weights.

Every SubmitFeedback is stored (:class:`FeedbackRow`). Its effect on the
configuration follows one bounded rule, per (strategy, domain of the group),
with learning rate η = :data:`LEARNING_RATE` (0.1):

* WRONG_MEMBER: every strategy that made an edge touching that member (the
  edge that joined it, and any edge that joined a later member through it)
  loses a tenth of its weight, never going below :data:`MIN_WEIGHT` (0.1):
  ``w ← max(0.1, w·(1 - η))``.
* GOOD_GROUP: every strategy that made one of the group's edges moves a tenth
  of the way towards 1: ``w ← min(1, w + η·(1 - w))``.
* MISSED_LINK: recorded only. It says no strategy scored the pair high
  enough, not which one should have, so raising any weight would be a guess;
  the records are there for an operator to act on (UpdateConfig).

A strategy counts once per feedback however many edges it made, so one
submission moves a weight by at most one step. The floor keeps a strategy
from being switched off by feedback alone (an operator disables it with
UpdateConfig). The change applies to the group's domain: when the
configuration has only a general entry (``DOMAIN_UNSPECIFIED``) for the
strategy, a domain entry is created from it (same enabled flag and
threshold), so feedback on Kubernetes groups never changes DICOM weights.
Edges made by names that are not registered strategies (manual correlation)
are ignored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from corrmesh.correlation.config import strategy_settings
from corrmesh.correlation.models import Base, EdgeRow, GroupMemberRow, GroupRow
from corrmesh.correlation.strategies import strategy_names
from corrmesh.runtime.errors import FieldViolations
from corrmesh.v1 import correlation_pb2

LEARNING_RATE = 0.1
MIN_WEIGHT = 0.1
MAX_WEIGHT = 1.0
MAX_COMMENT_CHARS = 4096
MAX_ID_CHARS = 128

_F = correlation_pb2.FeedbackType
_NEEDS_EVENT = (_F.FEEDBACK_TYPE_WRONG_MEMBER, _F.FEEDBACK_TYPE_MISSED_LINK)


class FeedbackRow(Base):
    __tablename__ = "correlation_feedback"

    feedback_id: Mapped[str] = mapped_column(String, primary_key=True)
    group_id: Mapped[str] = mapped_column(String, index=True)
    type: Mapped[int] = mapped_column(Integer)
    #: Empty for GOOD_GROUP.
    event_id: Mapped[str] = mapped_column(String)
    comment: Mapped[str] = mapped_column(Text)
    #: The group's domain when the feedback came: the domain whose weights moved.
    domain: Mapped[int] = mapped_column(Integer)
    #: Names of the strategies whose weight the feedback adjusted.
    strategies: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class FeedbackTarget:
    """What feedback on one group (and event) needs from the store."""

    domain: int
    #: Whether the request's event is a member of the group.
    is_member: bool
    #: Strategies of the edges touching the event (WRONG_MEMBER).
    member_strategies: frozenset[str]
    #: Strategies of all the group's edges (GOOD_GROUP).
    group_strategies: frozenset[str]

    def problem(self, kind: int) -> str | None:
        """Why the request's event does not fit ``kind``, or None."""
        if kind == _F.FEEDBACK_TYPE_WRONG_MEMBER and not self.is_member:
            return "is not a member of the group"
        if kind == _F.FEEDBACK_TYPE_MISSED_LINK and self.is_member:
            return "is already a member of the group"
        return None

    def strategies(self, kind: int) -> list[str]:
        """The registered strategies whose weight ``kind`` adjusts, sorted."""
        if kind == _F.FEEDBACK_TYPE_WRONG_MEMBER:
            chosen = self.member_strategies
        elif kind == _F.FEEDBACK_TYPE_GOOD_GROUP:
            chosen = self.group_strategies
        else:
            chosen = frozenset()
        return sorted(chosen & set(strategy_names()))


def validate_feedback(
    request: correlation_pb2.SubmitFeedbackRequest, violations: FieldViolations
) -> None:
    """Adds a violation for each bad field of a SubmitFeedback request (no store access)."""
    if not request.group_id:
        violations.add("group_id", "is required")
    elif len(request.group_id) > MAX_ID_CHARS:
        violations.add("group_id", f"must be at most {MAX_ID_CHARS} characters")
    if request.type == 0 or request.type not in _F.values():
        violations.add("type", "must be a known FeedbackType")
    if request.type in _NEEDS_EVENT and not request.event_id:
        violations.add("event_id", "is required for WRONG_MEMBER and MISSED_LINK")
    elif request.type == _F.FEEDBACK_TYPE_GOOD_GROUP and request.event_id:
        violations.add("event_id", "must be empty for GOOD_GROUP")
    elif len(request.event_id) > MAX_ID_CHARS:
        violations.add("event_id", f"must be at most {MAX_ID_CHARS} characters")
    if len(request.comment) > MAX_COMMENT_CHARS:
        violations.add("comment", f"must be at most {MAX_COMMENT_CHARS} characters")


def read_target(
    sessions: sessionmaker[Session], group_id: str, event_id: str
) -> FeedbackTarget | None:
    """The group's domain, membership of ``event_id`` and edge strategies; None if no group."""
    with sessions() as session:
        domain = session.scalar(select(GroupRow.domain).where(GroupRow.group_id == group_id))
        if domain is None:
            return None
        is_member = bool(event_id) and (
            session.scalar(
                select(GroupMemberRow.group_id).where(
                    GroupMemberRow.event_id == event_id, GroupMemberRow.group_id == group_id
                )
            )
            is not None
        )
        edges = session.execute(
            select(EdgeRow.from_event_id, EdgeRow.to_event_id, EdgeRow.strategy).where(
                EdgeRow.group_id == group_id
            )
        ).all()
    touching = frozenset(s for a, b, s in edges if is_member and event_id in (a, b))
    return FeedbackTarget(domain, is_member, touching, frozenset(s for _a, _b, s in edges))


def record_feedback(
    sessions: sessionmaker[Session],
    request: correlation_pb2.SubmitFeedbackRequest,
    domain: int,
    strategies: list[str],
) -> str:
    """Stores one feedback; its new id (a UUID). Blocking: call through to_thread."""
    feedback_id = str(uuid.uuid4())
    with sessions.begin() as session:
        session.add(
            FeedbackRow(
                feedback_id=feedback_id,
                group_id=request.group_id,
                type=request.type,
                event_id=request.event_id,
                comment=request.comment,
                domain=domain,
                strategies=strategies,
                created_at=datetime.now(UTC),
            )
        )
    return feedback_id


def next_weight(weight: float, kind: int) -> float:
    """One step of the rule in the module docstring for one weight."""
    if kind == _F.FEEDBACK_TYPE_WRONG_MEMBER:
        return max(MIN_WEIGHT, weight * (1.0 - LEARNING_RATE))
    if kind == _F.FEEDBACK_TYPE_GOOD_GROUP:
        return min(MAX_WEIGHT, weight + LEARNING_RATE * (1.0 - weight))
    return weight


def adjust_weights(
    config: correlation_pb2.CorrelationConfig, domain: int, strategies: list[str], kind: int
) -> correlation_pb2.CorrelationConfig:
    """A copy of ``config`` with the weights of ``strategies`` in ``domain`` moved per ``kind``.

    Strategies with no entry for ``domain`` get one, copied from the
    effective settings (general entry, else enabled at weight 1).
    """
    updated = correlation_pb2.CorrelationConfig()
    updated.CopyFrom(config)
    for name in dict.fromkeys(strategies):
        entry = next((e for e in updated.strategies if (e.name, e.domain) == (name, domain)), None)
        if entry is None:
            current = strategy_settings(config, name, domain)
            entry = updated.strategies.add(
                name=name,
                domain=domain,  # type: ignore[arg-type]
                enabled=current.enabled,
                weight=current.weight,
                threshold=current.threshold,
            )
        entry.weight = next_weight(entry.weight, kind)
    return updated


def weights_of(
    config: correlation_pb2.CorrelationConfig, domain: int, strategies: list[str]
) -> list[correlation_pb2.StrategyWeight]:
    """The weights ``strategies`` have in ``domain`` under ``config``."""
    return [
        correlation_pb2.StrategyWeight(
            strategy=name,
            domain=domain,  # type: ignore[arg-type]
            weight=strategy_settings(config, name, domain).weight,
        )
        for name in strategies
    ]

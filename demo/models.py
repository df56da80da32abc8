"""The demo's tenant data, one SQLite database per tenant (see [tool.pinstripe.database] in pyproject.toml).

Jobs use these models through ``ctx.db``, a SQLAlchemy session already bound to the running tenant's
database: ``ctx.db.scalars(select(User).where(User.subscribed))``.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    subscribed: Mapped[bool]


class Outbox(Base):
    """One message to deliver. The newsletter writes rows; deliver-notifications sends and marks them."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    to: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)

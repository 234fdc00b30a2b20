"""Imports every table, so that Alembic and the drift test see the whole schema."""

from app.db import Base
from app.intake.models import Alert, Delivery

__all__ = ["Alert", "Base", "Delivery"]

"""Imports every table, so that Alembic and the drift test see the whole schema."""

from app.catalog.models import RunbookVersion
from app.catalog.signoff_models import ReviewNotice, RunbookSignoff
from app.db import Base
from app.engine.brake_models import BrakeVerdict, StormBrakeRow
from app.engine.drills_models import DrillRun
from app.engine.feedback_models import Feedback
from app.engine.models import Approval, ApprovalLink, Execution, ExecutionAlert, Guard, StepRun
from app.engine.rollup_models import StatsHistogram, StatsRollup
from app.events import Event
from app.identity.models import SignInSession
from app.intake.models import Alert, AlertLabel, Delivery
from app.notify.models import Notification

__all__ = [
    "Alert", "AlertLabel", "Approval", "ApprovalLink", "Base", "BrakeVerdict", "Delivery",
    "DrillRun", "Event",
    "Execution", "ExecutionAlert", "Feedback", "Guard", "Notification", "ReviewNotice",
    "RunbookSignoff", "RunbookVersion", "SignInSession", "StatsHistogram", "StatsRollup",
    "StepRun", "StormBrakeRow",
]

"""Segments over time (scripts/monitor.py): frozen re-scoring at each as-of date, membership churn
beside an RFM baseline, drift, backtests and alerts. See `eventseg.monitor.api`."""

from eventseg.monitor.alerts import Thresholds
from eventseg.monitor.api import MONITOR_DIR, monitor_from_config, monitor_run

__all__ = ["MONITOR_DIR", "Thresholds", "monitor_from_config", "monitor_run"]

"""Segments over time (eventseg monitor): frozen re-scoring at each as-of date, membership churn
beside an RFM baseline, drift, backtests and alerts. See `eventseg.apps.monitor.api`."""

from eventseg.apps.monitor.alerts import Thresholds
from eventseg.apps.monitor.api import monitor_from_config, monitor_run

__all__ = ["Thresholds", "monitor_from_config", "monitor_run"]

"""report.html and its charts: `build_report(path, ReportInputs.from_run(run_dir))` writes the
page; each `visualize_*` returns a Plotly figure for a notebook."""

from eventseg.report.figures import visualize_lift, visualize_map, visualize_profile, visualize_sizes
from eventseg.report.html import build_report, rebuild_run_report, render, report_title
from eventseg.report.inputs import LabelScores, ReportInputs
from eventseg.report.quality import visualize_calibration, visualize_gain

__all__ = ["build_report", "rebuild_run_report", "report_title", "render", "ReportInputs", "LabelScores", "visualize_map", "visualize_sizes",
           "visualize_profile", "visualize_lift", "visualize_gain", "visualize_calibration"]

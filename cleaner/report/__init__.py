"""``cleaner report``: one self-contained HTML page built from the state files under
``R/.cleaner/`` (see :func:`cleaner.report.build.build_report`)."""

from cleaner.report.build import SECTIONS, ReportResult, build_report

__all__ = ["SECTIONS", "ReportResult", "build_report"]

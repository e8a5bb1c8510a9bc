"""Report bundle: figures (300-dpi PNG + JPG), Word and self-contained HTML reports, model card.

Takes the predictions table and the evaluation layer's results; never imports torch. Research use only.
"""

from breastclip.report.bundle import ReportPaths, write_report

__all__ = ["ReportPaths", "write_report"]

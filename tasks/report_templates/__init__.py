"""Jinja2 templates of the XC reports (tasks/reports.py); a package so that they ship."""

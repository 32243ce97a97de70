"""Metrics with the anchors' exact conventions, behind named profiles."""

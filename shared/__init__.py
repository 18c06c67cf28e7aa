"""The core of the Customer Insights to Snapchat exporter.

``function_app.py`` and the command line (``python -m shared``) both call into this package:
``service`` for what the app does, ``api`` for the HTTP routes, ``runtime`` for wiring.
"""

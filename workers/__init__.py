"""Celery workers: the app from settings and thin tasks that call into ``app``."""

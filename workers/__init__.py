"""Celery worker and scheduler processes; they depend on `order_engine`, never the reverse."""

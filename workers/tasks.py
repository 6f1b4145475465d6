"""Celery tasks: thin wrappers that unpack ids and call one service function."""

from __future__ import annotations

import logging

from celery import shared_task

from order_engine import dispatch

log = logging.getLogger(__name__)


@shared_task(name=dispatch.RECONCILE_ORDERS, ignore_result=True)
def reconcile_orders() -> int:
    """Re-dispatch orders the queue may have lost (filled in by the reliability work)."""
    return 0

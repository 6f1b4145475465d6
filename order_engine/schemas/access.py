"""Bodies of the access endpoints."""

from __future__ import annotations

from marshmallow import Schema, fields


class StreamTicketSchema(Schema):
    """201 to POST /api/stream-tickets (documentation only: the view builds it)."""

    ticket = fields.String(required=True)
    expiresInS = fields.Integer(required=True, metadata={"description": "seconds it is valid"})
    ws = fields.String(required=True, metadata={"description": "the WebSocket URL to open"})

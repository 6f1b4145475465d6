"""What a row of an account's export holds (`GET /api/orders/export`): its columns, in order,
as the statement that reads them selects them and the API writes them."""

from __future__ import annotations

# The columns, in order, as clients read them (docs/api.md, "Exporting"). What each order paid
# in fees and how it landed (`fees`, `landing`) go after `txHash` once orders record them: the
# place is marked in repositories/export.py's statement too.
COLUMNS = (
    "orderId",
    "parentId",
    "sliceIndex",
    "type",
    "status",
    "tokenIn",
    "tokenOut",
    "amountIn",
    "filledIn",
    "amountOut",
    "averagePrice",
    "venue",
    "route",
    "txHash",
    "clientOrderId",
    "errorCode",
    "createdAt",
    "updatedAt",
    "cursor",
)

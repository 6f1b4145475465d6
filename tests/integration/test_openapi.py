import pytest

pytestmark = pytest.mark.integration


def test_openapi_document_describes_the_order_endpoints_from_the_schemas(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert {"post", "get"} <= set(spec["paths"]["/api/orders/execute"])
    create = spec["components"]["schemas"]["OrderCreate"]
    assert set(create["required"]) == {"type", "tokenIn", "tokenOut", "amount"}
    assert create["properties"]["amount"] == {
        "type": "string",
        "format": "decimal",
        "description": create["properties"]["amount"]["description"],
        "example": "1.5",
    }
    assert create["properties"]["slippageBps"]["maximum"] == 5000


def test_browsable_page_links_the_document(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert b"/api/openapi.json" in response.data

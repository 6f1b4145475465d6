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
    # A decimal string, or (as the server accepts it) a plain JSON number.
    amount = create["properties"]["amount"]
    assert amount["example"] == "1.5"
    assert amount["anyOf"][0] == {
        "type": "string",
        "format": "decimal",
        "pattern": r"^[0-9]{1,30}(\.[0-9]{1,30})?$",
    }
    assert amount["anyOf"][1]["type"] == "number"
    assert create["properties"]["slippageBps"]["maximum"] == 5000


def test_browsable_page_links_the_document(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert b"/api/openapi.json" in response.data


def test_browsable_page_is_swagger_ui_served_from_the_package(client):
    page = client.get("/api/docs").get_data(as_text=True)
    assert "SwaggerUIBundle" in page
    assert "//cdn" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert f"/api/docs/assets/{asset}" in page
        response = client.get(f"/api/docs/assets/{asset}")
        assert response.status_code == 200, asset
        assert len(response.data) > 1000


def test_list_query_parameters_are_documented(client):
    spec = client.get("/api/openapi.json").get_json()
    parameters = {p["name"]: p for p in spec["paths"]["/api/orders"]["get"]["parameters"]}
    assert set(parameters) == {"status", "type", "createdFrom", "createdTo", "limit", "cursor"}
    assert parameters["createdFrom"]["schema"]["format"] == "date-time"
    assert all(p.get("description") for p in parameters.values())


def test_export_query_parameters_and_formats_are_documented(client):
    operation = client.get("/api/openapi.json").get_json()["paths"]["/api/orders/export"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert set(parameters) == {"from", "to", "format", "after"}
    assert parameters["format"]["schema"]["enum"] == ["csv", "ndjson"]
    assert all(p.get("description") for p in parameters.values())
    assert set(operation["responses"]["200"]["content"]) == {"text/csv", "application/x-ndjson"}
    assert "Export-To" in operation["responses"]["200"]["headers"]


@pytest.mark.parametrize("path", ["/api/orders/execute", "/api/orders/execute/ws"])
def test_get_on_the_websocket_paths_explains_how_to_use_them(client, path):
    response = client.get(path)
    assert response.status_code == 426
    body = response.get_json()
    assert "WebSocket" in body["description"]
    assert "not an order id" not in body["description"]


def test_every_view_that_declares_an_operation_is_in_the_document_with_nothing_else(client):
    spec = client.get("/api/openapi.json").get_json()
    operations = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert operations == {
        ("/api/orders/execute", "post"),
        ("/api/orders/execute", "get"),  # the WebSocket upgrade
        ("/api/orders", "get"),
        ("/api/orders/export", "get"),
        ("/api/orders/{order_id}", "get"),
        ("/api/orders/{order_id}", "delete"),
        ("/api/stream-tickets", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }


def test_every_refusal_documented_answers_with_the_one_error_envelope(client):
    spec = client.get("/api/openapi.json").get_json()
    responses = spec["components"]["responses"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                name = response["$ref"].removeprefix("#/components/responses/")
                schema = responses[name]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)


def test_probes_and_metrics_need_no_key_and_everything_else_does(client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["security"] == [{"apiKey": []}]
    open_ones = {
        path
        for path, item in spec["paths"].items()
        for operation in item.values()
        if operation.get("security") == []
    }
    assert open_ones == {"/healthz", "/readyz", "/metrics"}

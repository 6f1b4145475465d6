import pytest

from order_engine.app import create_app

pytestmark = pytest.mark.integration


def test_healthz_answers_while_the_process_is_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_200_when_postgres_and_redis_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"postgres": "ok", "redis": "ok"}


def test_readyz_is_503_naming_redis_when_redis_is_unreachable(test_settings):
    app = create_app({**test_settings, "REDIS_URL": "redis://127.0.0.1:1/0"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["code"] == 503
    assert "redis" in body["description"]
    assert "postgres" not in body["errors"]


def test_readyz_is_503_naming_postgres_when_postgres_is_unreachable(test_settings):
    app = create_app({**test_settings, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert list(response.get_json()["errors"]) == ["postgres"]


def test_unknown_path_gets_the_json_error_envelope(client):
    response = client.get("/no/such/path")
    assert response.status_code == 404
    body = response.get_json()
    assert body["code"] == 404
    assert body["message"] == "Not Found"
    assert body["description"]


def test_wrong_method_gets_405_in_the_envelope_with_allow(client):
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert response.get_json()["code"] == 405
    assert "GET" in response.headers["Allow"]

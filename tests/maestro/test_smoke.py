def test_health_is_ok(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_with_real_postgres_and_redis(client, db):
    response = client.get("/api/ready")
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"]["database"]["status"] == "up"
    assert body["checks"]["redis"]["status"] == "up"

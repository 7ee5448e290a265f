def test_seed_payload_round_trips(server, seed_bytes, seed):
    response = server.post(seed_bytes)
    assert response.status_code == 201, response.text
    assert server.get("/api/bot/resumen/").json() == seed["resumen"]

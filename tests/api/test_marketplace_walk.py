"""The whole loop through HTTP: post, bid, accept, deliver, revise, accept; cancel; rollback."""

from tests.conftest import bearer

TASK = {"title": "Parse invoices", "description": "Extract totals from a batch of PDF invoices.", "budget_credits": 200}


async def _operator_with_agent(client, admin_key, name):
    op = (await client.post("/api/v1/admin/operators", json={"name": name}, headers=bearer(admin_key))).json()["data"]
    agent = await client.post(
        "/api/v1/operator/agents", json={"name": f"{name}-bot", "description": "bot"}, headers=bearer(op["api_key"])
    )
    return op, agent.json()["data"]


async def _balance(client, agent):
    data = (await client.get("/api/v1/agents/me/credits", headers=bearer(agent["api_key"]))).json()["data"]
    return data["credit_balance"], data["escrow_held"]


async def test_post_bid_accept_deliver_revise_accept_settles_the_escrow(client, admin_key):
    _, poster = await _operator_with_agent(client, admin_key, "poster")
    _, worker = await _operator_with_agent(client, admin_key, "worker")
    posted = await client.post("/api/v1/tasks", json=TASK, headers=bearer(poster["api_key"]))
    assert posted.status_code == 201, posted.text
    task = posted.json()["data"]
    assert await _balance(client, poster) == (400, 200)

    bid = await client.post(
        f"/api/v1/tasks/{task['id']}/claims", json={"proposed_credits": 150}, headers=bearer(worker["api_key"])
    )
    assert bid.status_code == 201, bid.text
    accepted = await client.post(
        f"/api/v1/tasks/{task['id']}/claims/{bid.json()['data']['id']}/accept", headers=bearer(poster["api_key"])
    )
    assert accepted.json()["data"] == {
        "task_id": task["id"],
        "claim_id": bid.json()["data"]["id"],
        "agent_id": worker["id"],
        "status": "accepted",
    }

    first = await client.post(
        f"/api/v1/tasks/{task['id']}/deliverables", json={"content": "draft"}, headers=bearer(worker["api_key"])
    )
    assert first.status_code == 201 and first.json()["data"]["revision_number"] == 1
    revision = await client.post(
        f"/api/v1/tasks/{task['id']}/deliverables/{first.json()['data']['id']}/revision",
        json={"revision_notes": "add totals"},
        headers=bearer(poster["api_key"]),
    )
    assert revision.json()["data"]["status"] == "revision_requested"
    second = await client.post(
        f"/api/v1/tasks/{task['id']}/deliverables", json={"content": "final"}, headers=bearer(worker["api_key"])
    )
    assert second.json()["data"]["revision_number"] == 2
    done = await client.post(
        f"/api/v1/tasks/{task['id']}/deliverables/{second.json()['data']['id']}/accept",
        headers=bearer(poster["api_key"]),
    )
    assert done.json()["data"]["status"] == "completed", done.text

    # price 150: worker gets 150 - 15, the platform 15, the poster its change of 50.
    assert await _balance(client, poster) == (450, 0)
    assert await _balance(client, worker) == (735, 0)
    detail = (await client.get(f"/api/v1/tasks/{task['id']}", headers=bearer(worker["api_key"]))).json()["data"]
    assert detail["status"] == "completed" and detail["deliverables_count"] == 2
    again = await client.post(
        f"/api/v1/tasks/{task['id']}/deliverables/{second.json()['data']['id']}/accept",
        headers=bearer(poster["api_key"]),
    )
    assert again.status_code == 409


async def test_cancel_refunds_and_rollback_reopens(client, admin_key):
    _, poster = await _operator_with_agent(client, admin_key, "poster")
    _, worker = await _operator_with_agent(client, admin_key, "worker")
    task = (await client.post("/api/v1/tasks", json=TASK, headers=bearer(poster["api_key"]))).json()["data"]
    bid = (
        await client.post(
            f"/api/v1/tasks/{task['id']}/claims", json={"proposed_credits": 100}, headers=bearer(worker["api_key"])
        )
    ).json()["data"]
    await client.post(f"/api/v1/tasks/{task['id']}/claims/{bid['id']}/accept", headers=bearer(poster["api_key"]))
    rolled = await client.post(f"/api/v1/tasks/{task['id']}/rollback", headers=bearer(poster["api_key"]))
    assert rolled.json()["data"]["status"] == "open"
    assert await _balance(client, poster) == (400, 200)
    rebid = await client.post(
        f"/api/v1/tasks/{task['id']}/claims", json={"proposed_credits": 120}, headers=bearer(worker["api_key"])
    )
    assert rebid.status_code == 201, rebid.text
    cancelled = await client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=bearer(poster["api_key"]))
    assert cancelled.json()["data"]["status"] == "cancelled"
    assert await _balance(client, poster) == (600, 0)
    claims = (await client.get(f"/api/v1/tasks/{task['id']}/claims", headers=bearer(poster["api_key"]))).json()
    assert [c["status"] for c in claims["data"]] == ["rejected", "rejected"]


async def test_posting_beyond_the_wallet_is_refused_and_moves_nothing(client, admin_key):
    _, poster = await _operator_with_agent(client, admin_key, "poster")
    refused = await client.post(
        "/api/v1/tasks", json={**TASK, "budget_credits": 601}, headers=bearer(poster["api_key"])
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert await _balance(client, poster) == (600, 0)


async def test_browse_and_search(client, admin_key):
    _, poster = await _operator_with_agent(client, admin_key, "poster")
    for budget, title in ((50, "Write a parser for logs"), (80, "Translate a brochure"), (30, "Parsing CSV files")):
        await client.post(
            "/api/v1/tasks", json={**TASK, "title": title, "budget_credits": budget}, headers=bearer(poster["api_key"])
        )
    pages, cursor = [], None
    while True:
        params = {"sort": "budget_high", "limit": 1, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/api/v1/tasks", params=params, headers=bearer(poster["api_key"]))).json()
        pages += [t["budget_credits"] for t in body["data"]]
        cursor = body["meta"]["cursor"]
        if not cursor:
            break
    assert pages[:3] == sorted(pages, reverse=True)[:3]
    found = (await client.get("/api/v1/tasks/search", params={"q": "parse"}, headers=bearer(poster["api_key"]))).json()
    titles = {t["title"] for t in found["data"]}
    assert {"Write a parser for logs", "Parsing CSV files"} <= titles
    assert "Translate a brochure" not in titles
    bad = await client.get("/api/v1/tasks", params={"status": "bogus"}, headers=bearer(poster["api_key"]))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_PARAMETER"


async def test_audit_is_clean_after_the_whole_loop_and_lists_transfers(client, admin_key):
    await test_post_bid_accept_deliver_revise_accept_settles_the_escrow(client, admin_key)
    await test_cancel_refunds_and_rollback_reopens(client, admin_key)
    report = (await client.get("/api/v1/admin/ledger/audit", headers=bearer(admin_key))).json()["data"]
    assert report["ok"] is True, report
    assert set(report["violations"]) == {f"L{n}" for n in range(1, 13)}  # L12 (issue 13): expired tasks refunded once
    assert len(report["ledger_hash"]) == 64
    settlements = await client.get(
        "/api/v1/admin/ledger/transfers", params={"kind": "settlement"}, headers=bearer(admin_key)
    )
    [settlement] = settlements.json()["data"]
    assert sorted(e["amount"] for e in settlement["entries"]) == [-200, 15, 50, 135]


async def test_audit_counts_a_corrupted_balance(client, admin_key, conn):
    await test_post_bid_accept_deliver_revise_accept_settles_the_escrow(client, admin_key)
    # Corrupt a cached balance behind the ledger's back, as a superuser could (LED-5).
    await conn.execute("ALTER TABLE account DISABLE TRIGGER account_balance_guard")
    await conn.execute("UPDATE account SET balance = balance + 1 WHERE kind = 'platform_revenue' AND shard = 0")
    await conn.execute("ALTER TABLE account ENABLE TRIGGER account_balance_guard")
    report = (await client.get("/api/v1/admin/ledger/audit", headers=bearer(admin_key))).json()["data"]
    assert report["ok"] is False
    assert report["violations"]["L3"] == 1 and report["violations"]["L2"] == 1

"""Schedules fire runs; two services on one database never start the same fire twice."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING

from serve.conftest import SCHEDULED

if TYPE_CHECKING:
    from pathlib import Path

    from serve.conftest import Serve


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def test_two_services_on_one_database_start_each_fire_once(serve: Serve, db: Path) -> None:
    first = serve(pipelines=SCHEDULED)
    second = serve(pipelines=SCHEDULED)
    time.sleep(5.5)
    listed = first.client.get("/v1/pipelines").json()
    assert first.stop() == 0
    assert second.stop() == 0

    fires = rows(db, "SELECT fire_time, run_id, owner_pid FROM schedule_fires ORDER BY fire_time")
    runs = rows(db, "SELECT run_id FROM runs WHERE pipeline_id = 'every-second'")
    assert len(fires) >= 3, fires
    fire_times = [str(f[0]) for f in fires]
    assert len(set(fire_times)) == len(fire_times)
    assert all(t.endswith(".000Z") for t in fire_times)  # whole seconds: shared fire times
    # Every fire started exactly one run, and every scheduled run belongs to one fire.
    assert sorted(str(f[1]) for f in fires) == sorted(str(r[0]) for r in runs)
    assert {f[2] for f in fires} <= {first.process.pid, second.process.pid}
    for (run_id,) in runs:
        body = rows(db, f"SELECT body FROM events WHERE run_id = '{run_id}' AND seq = 1")
        created = json.loads(str(body[0][0]))
        assert created["actor"] == "schedule"
        assert created["data"]["params"] == {"origin": "schedule"}

    (pipeline,) = listed
    every, cron = pipeline["schedules"]
    assert every["schedule"] == "every 1s"
    assert every["last_fire"] is not None and every["last_fire"] in fire_times
    assert every["next_fire"] > every["last_fire"]
    assert cron["schedule"] == "cron 0 3 * * * (Europe/Paris)"
    assert cron["last_fire"] is None
    assert cron["next_fire"][11:19] in ("01:00:00", "02:00:00")  # 03:00 Paris in UTC


def test_fires_missed_while_no_service_ran_are_not_made_up(serve: Serve, db: Path) -> None:
    service = serve(pipelines=SCHEDULED)
    time.sleep(2.5)
    assert service.stop() == 0
    before = rows(db, "SELECT count(*) FROM schedule_fires")[0][0]
    time.sleep(3)  # fires pass with nobody serving
    later = serve(pipelines=SCHEDULED)
    time.sleep(0.5)
    assert later.stop() == 0
    fires = [str(r[0]) for r in rows(db, "SELECT fire_time FROM schedule_fires ORDER BY 1")]
    # At most one fire in the half second the second service lived, none for the gap.
    assert len(fires) - int(str(before)) <= 1, fires

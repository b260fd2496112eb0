"""A job's request, progress and result are typed per job type; the resume checkpoint is a column of its own,
never in the public progress; the job list filters by type in the query (not among the newest N)."""

from __future__ import annotations

from lorastudio.studio import jobs
from lorastudio.studio.db import Job
from tests.jobrequests import sample_request


def test_progress_is_one_model_and_the_checkpoint_stays_off_it(client):
    factory = client.app.state.studio.factory
    with factory() as session:
        job = jobs.add_job(session, owner_id=client.app.state.studio.local_user, request=sample_request("training"))
        session.commit()
        job_id = job.id
    assert jobs.claim(factory, worker="w", lease_seconds=30, types=("training",)) == job_id
    progress = jobs.JobProgress(phase="train", step=4, total=10, loss=0.25, losses=[(4, 0.25)])
    assert jobs.report(factory, job_id=job_id, worker="w", progress=progress) is False
    assert jobs.keep_checkpoint(factory, job_id=job_id, worker="w", checkpoint=jobs.Checkpoint(step=4, blob="c" * 64))
    assert not jobs.keep_checkpoint(
        factory, job_id=job_id, worker="other", checkpoint=jobs.Checkpoint(step=9, blob="d")
    )

    answer = client.get(f"/api/v1/jobs/{job_id}").json()
    typed = {"phase": "train", "step": 4, "total": 10, "message": None, "eta_seconds": None, "loss": 0.25}
    empty = {"previews": [], "scores": [], "eval_renders": []}
    assert answer["progress"] | {"losses": None} == typed | {"losses": None} | empty
    assert answer["progress"]["losses"] == [[4, 0.25]] and "checkpoint" not in answer["progress"]
    assert answer["checkpoint_step"] == 4 and "c" * 64 not in str(answer)  # where it resumes, not the blob
    assert answer["request"]["type"] == "training" and answer["request"]["estimate"]["credits"] == [0, 0]
    with factory() as session:
        assert session.get(Job, job_id).checkpoint == {"step": 4, "blob": "c" * 64}


def test_the_job_list_filters_by_type_before_its_limit(client):
    factory, me = client.app.state.studio.factory, client.app.state.studio.local_user
    with factory() as session:
        first = jobs.add_job(session, owner_id=me, request=sample_request("generation"))
        for _ in range(3):
            jobs.add_job(session, owner_id=me, request=sample_request("export"))
        session.commit()
        old = first.id
    with factory() as session:
        assert [j.id for j in jobs.list_jobs(session, owner_id=me, type="generation", limit=2)] == [old]
    assert [j["id"] for j in client.get("/api/v1/jobs", params={"type": "generation"}).json()] == [old]
    assert client.get("/api/v1/jobs", params={"type": "nonsense"}).status_code == 422

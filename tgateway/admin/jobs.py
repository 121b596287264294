"""``/api/admin/transcode``: the transcoding queue (running, queued in the order they will run,
then ended jobs, with the counts by state) and an admin's retry of a video's transcode."""

from __future__ import annotations

from typing import Any

from tgateway.errors import ApiError, BadRequest, NotFound
from tgateway.http.auth import Authenticator, Need, Principal, authorized
from tgateway.http.jsonio import json_body
from tgateway.http.openapi import Body, Op, Param, Reply, Schema
from tgateway.storage.transcode_jobs import Job, JobStore
from tgateway.transcode.api import Transcoding

from .actions import Moderation
from .routing import (
    APP,
    BAD_PAGE,
    COUNTS,
    INT,
    NUM_OR_NULL,
    PAGE_PARAMS,
    STR_OR_NULL,
    TAGS,
    choice,
    json_object,
    page,
    paged,
    paged_schema,
)

__all__ = ["JobRoutes"]

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
#: a transcode job's priority (higher first; SQLite's INTEGER holds far more)
MAX_PRIORITY = 2**31 - 1

_JOB: Schema = {
    "type": "object",
    "required": ["sha256", "state", "priority", "duration", "progress", "attempts", "error",
                 "stderr_tail", "created_at", "started_at", "finished_at"],
    "properties": {"sha256": {"type": "string"}, "state": {"enum": list(JOB_STATES)},
                   "priority": {"type": "integer"}, "duration": NUM_OR_NULL,
                   "progress": {"type": "number"}, "attempts": INT, "error": STR_OR_NULL,
                   "stderr_tail": STR_OR_NULL, "created_at": {"type": "number"},
                   "started_at": NUM_OR_NULL, "finished_at": NUM_OR_NULL},
}


def _job_json(job: Job) -> dict[str, Any]:
    return {"sha256": job.sha256, "state": job.state, "priority": job.priority,
            "duration": job.duration, "progress": job.progress, "attempts": job.attempts,
            "error": job.error, "stderr_tail": job.stderr_tail, "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at}


class JobRoutes:
    """The transcoding routes of :class:`~tgateway.admin.routes.AdminApi`."""

    auth: Authenticator
    moderation: Moderation
    jobs: JobStore
    transcoding: Transcoding | None  # None: the transcoder does not run

    @authorized(APP, "/api/admin/transcode", methods=["GET"], need=Need.ADMIN, op=Op(
        "Transcoding jobs", tags=TAGS, name="admin_transcode_jobs",
        description="Running, queued in the order they will run, then ended ones; with the "
                    "counts by state and whether the transcoder runs.",
        params=[Param("state", schema={"type": "string", "enum": list(JOB_STATES)}),
                *PAGE_PARAMS],
        replies={200: Reply("a page of jobs", json=paged_schema(
            "jobs", _JOB, counts=COUNTS, active={"type": "boolean"}))},
        errors={400: BAD_PAGE}))
    async def transcode_jobs(self, request: Any, principal: Principal) -> bytes:
        limit, offset = page(request)
        state = choice(request, "state", JOB_STATES, None)
        jobs, total = await self.jobs.page(state, limit, offset)
        out = paged([_job_json(j) for j in jobs], total, limit, offset, "jobs")
        out["counts"] = await self.jobs.counts()
        out["active"] = bool(self.transcoding is not None and self.transcoding.active)
        return json_body(request, out)

    @authorized(APP, "/api/admin/transcode/<sha256:sha>/retry", methods=["POST"],
                need=Need.ADMIN, op=Op(
        "Transcode a video again", tags=TAGS, name="admin_transcode_retry",
        description="A failed or done job is queued again; a probed video that was never "
                    "queued is queued for the first time.",
        body=Body({"application/json": {
            "type": "object", "properties": {"priority": {
                "type": "integer", "minimum": -MAX_PRIORITY, "maximum": MAX_PRIORITY,
                "description": "higher runs first (default: the job's, or 0)"}}}},
            required=False),
        replies={202: Reply("queued", json={
            "type": "object", "required": ["sha256", "state", "priority"],
            "properties": {"sha256": {"type": "string"}, "state": {"type": "string"},
                           "priority": {"type": "integer"}}})},
        errors={400: "not a JSON object, or a priority that is not a whole number in range",
                404: "no job for this file, and it is not a probed video",
                503: "transcoding is disabled"}))
    async def retry(self, request: Any, principal: Principal, sha: str) -> bytes:
        body = json_object(request, required=False)
        priority = body.get("priority")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)
                                     or abs(priority) > MAX_PRIORITY):
            raise BadRequest(f"priority must be a whole number from -{MAX_PRIORITY} to "
                             f"{MAX_PRIORITY}", code="invalid_field")
        transcoder = self.transcoding
        if transcoder is None or not transcoder.active:
            raise ApiError("transcoding is disabled", status=503, code="transcoding_disabled")
        job = await transcoder.retry(sha, priority)
        if job is None:
            raise NotFound("no transcoding job for this file, and it is not a probed video",
                           code="job_not_found")
        await self.moderation.record(principal.pubkey, "transcode.retry", sha,
                                     {"priority": job.priority, "state": job.state})
        return json_body(request, {"sha256": sha, "state": job.state, "priority": job.priority},
                         202)

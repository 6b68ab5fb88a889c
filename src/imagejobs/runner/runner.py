"""A runner: claims due tasks under a lease, runs their steps concurrently, heartbeats
the leases it holds, records results in batches, and on stop finishes or releases.

One loop claims as many tasks as it has free slots (up to ``concurrency``), and each
claimed task runs as its own asyncio task. Results are written by one recorder that
takes everything queued at once into one transaction, so a burst of quick steps costs a
few transactions, not one each. Every write carries the claim's fencing token: once a
lease has been taken over, this runner's writes for it are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from imagejobs.domain.errors import ServiceUnavailable
from imagejobs.domain.lifecycle import ClaimedTask, Reschedule, Transition
from imagejobs.domain.steering import Behaviour
from imagejobs.services.engine import EngineService, new_owner

logger = logging.getLogger("imagejobs.runner")
MAX_CLAIM = 100
MAX_RECORD = 500
_ERROR_PAUSE_SECONDS = 1.0
# After a claim that did not fill every free slot, wait this long before the next one.
GATHER_SECONDS = 0.05


@dataclass
class _Step:
    task: ClaimedTask
    progress: str = ""
    recorded: asyncio.Future[bool] | None = field(default=None, repr=False)


class Runner:
    def __init__(
        self,
        engine: EngineService,
        *,
        concurrency: int = 32,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        shutdown_grace_seconds: float = 10.0,
        owner: str | None = None,
    ) -> None:
        self.engine = engine
        self.owner = owner or new_owner()
        self._concurrency = concurrency
        self._lease_ms = round(lease_seconds * 1000)
        self._poll = poll_seconds
        self._grace = shutdown_grace_seconds
        self._steps: dict[asyncio.Task[None], _Step] = {}
        self._results: asyncio.Queue[tuple[Transition, asyncio.Future[bool]]] = asyncio.Queue()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._clock_synced = False
        # The last claim filled every slot it asked for: more is likely due, so the next
        # claim goes ahead without asking the queue first (one round trip less per batch).
        self._backlog = False
        # Read by readiness and the metrics (observability.py): the last heartbeat that
        # reached the database, steps rescheduled after a transient failure, and results
        # dropped because another runner had taken the lease over.
        self.heartbeat_at = time.monotonic()
        self.retries = 0
        self.taken_over = 0

    # --- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the runner to stop: no new claims; running steps get the grace period."""
        self._stopping.set()
        self._slot_freed.set()

    async def run(self) -> None:
        """Claim and run tasks until ``stop()``; then finish or release what is held."""
        await self.engine.store.listen()
        heartbeats = asyncio.create_task(self._heartbeats(), name="imagejobs-heartbeat")
        recorder = asyncio.create_task(self._recorder(), name="imagejobs-recorder")
        try:
            while not self._stopping.is_set():
                await self._step()
        finally:
            await self._finish_or_release()
            for task in (heartbeats, recorder):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await self.engine.store.unlisten()
            logger.info("runner %s stopped", self.owner)

    # --- claiming -------------------------------------------------------------------------

    async def _step(self) -> None:
        """One turn of the loop: claim what is due, or wait for a slot or for work."""
        if len(self._steps) >= self._concurrency:
            await self._slot_freed.wait()
            self._slot_freed.clear()
            return
        if not self._backlog:
            try:
                if not self._clock_synced:  # no decision on this machine's own clock
                    await self.engine.sync_clock()
                    self._clock_synced = True
                until_due = await self.engine.seconds_until_due()
            except Exception:
                logger.warning("cannot read the queue now; retrying", exc_info=True)
                await self._pause(_ERROR_PAUSE_SECONDS)
                return
            if until_due is None or until_due > 0:
                # Work due in a moment is left to gather too: claims come in batches.
                soon = None if until_due is None else max(until_due, GATHER_SECONDS)
                await self._wait_for_work(self._poll if soon is None else min(self._poll, soon))
                return
        self._backlog = await self._claim_some()
        if not self._backlog:
            # Fewer were due than there are free slots: let the next ones gather for a
            # moment, so that a trickle of work is claimed in batches, not one by one.
            await self._pause(GATHER_SECONDS)

    async def _claim_some(self) -> bool:
        """Claim for the free slots; True when every slot asked for was filled."""
        wanted = min(self._concurrency - len(self._steps), MAX_CLAIM)
        try:
            claimed = await self.engine.claim(self.owner, wanted, self._lease_ms)
        except Exception:
            logger.warning("cannot claim tasks now; retrying", exc_info=True)
            await self._pause(_ERROR_PAUSE_SECONDS)
            return False
        try:
            behaviours = await self.engine.behaviours(claimed) if claimed else {}
        except Exception:
            # Claimed but not runnable now: give them back at once rather than leave them
            # leased (a whole lease lost, and an attempt counted) by nobody.
            logger.warning(
                "cannot read the steering of claimed tasks; releasing them", exc_info=True
            )
            await self._release(claimed)
            await self._pause(_ERROR_PAUSE_SECONDS)
            return False
        for task in claimed:
            step = _Step(task)
            behaviour = behaviours[(task.project_id, task.job_type)]
            runner = asyncio.create_task(self._run_step(step, behaviour))
            self._steps[runner] = step
            runner.add_done_callback(self._step_done)
        return len(claimed) == wanted

    def _step_done(self, runner: asyncio.Task[None]) -> None:
        self._steps.pop(runner, None)
        self._slot_freed.set()

    async def _wait_for_work(self, timeout: float) -> None:
        """Until work may be due (a wake-up from this process or the database), the
        timeout, or ``stop()``."""
        watcher = asyncio.create_task(self.engine.store.wait_for_work(timeout))
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({watcher, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, stopping):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # --- running and recording --------------------------------------------------------------

    async def _run_step(self, step: _Step, behaviour: Behaviour) -> None:
        def progress(text: str) -> None:
            step.progress = text

        transition = await self.engine.run_step(step.task, behaviour, progress)
        if isinstance(transition, Reschedule) and transition.attempts_delta == 0:
            self.retries += 1
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        step.recorded = future
        await self._results.put((transition, future))
        try:
            applied = await asyncio.shield(future)
        except (ServiceUnavailable, OSError):
            # Not recorded: the lease runs out and the step runs again (it is idempotent).
            logger.warning("could not record sub-job %s", step.task.sub_job_id, exc_info=True)
            return
        if not applied:
            self.taken_over += 1
            logger.info(
                "sub-job %s was taken over by another runner: result dropped",
                step.task.sub_job_id,
            )

    async def _recorder(self) -> None:
        """Write queued results, everything available at once in one transaction."""
        while True:
            batch = [await self._results.get()]
            while len(batch) < MAX_RECORD and not self._results.empty():
                batch.append(self._results.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[tuple[Transition, asyncio.Future[bool]]]) -> None:
        """Record a batch. A database that is unavailable for a while costs no attempt:
        the batch is written again (its steps keep their leases meanwhile) until it is
        recorded or the runner stops. A batch the database refuses is written one result
        at a time, so that one bad result fails only its own sub-job."""
        transitions = [transition for transition, _ in batch]
        while True:
            try:
                applied = await self.engine.record(transitions)
                break
            except (ServiceUnavailable, OSError) as exc:
                if self._stopping.is_set():
                    _fail(batch, exc)
                    return
                logger.warning("cannot record %d results now; retrying", len(batch))
                await asyncio.sleep(_ERROR_PAUSE_SECONDS)
            except Exception as exc:
                if len(batch) == 1:
                    await self._record_unrecordable(batch[0], exc)
                    return
                logger.warning("recording %d results failed; one by one now", len(batch))
                for item in batch:
                    await self._write([item])
                return
        for (_, future), ok in zip(batch, applied, strict=True):
            if not future.done():
                future.set_result(ok)

    async def _record_unrecordable(
        self, item: tuple[Transition, asyncio.Future[bool]], exc: Exception
    ) -> None:
        """The database refused this result: record the step as failed instead."""
        transition, future = item
        logger.error(
            "the result of sub-job %s cannot be recorded", transition.task.sub_job_id, exc_info=exc
        )
        try:
            [applied] = await self.engine.record([self.engine.unrecordable(transition)])
        except Exception as again:
            _fail([item], again)  # its lease runs out and the step runs again
            return
        if not future.done():
            future.set_result(applied)

    async def _heartbeats(self) -> None:
        interval = self._lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            held = [
                (s.task.sub_job_id, s.task.fencing_token, s.progress) for s in self._steps.values()
            ]
            try:
                await self.engine.heartbeat(self.owner, held, self._lease_ms)
                self.heartbeat_at = time.monotonic()
            except Exception:
                logger.warning("heartbeat failed", exc_info=True)

    # --- stopping ---------------------------------------------------------------------------

    async def _finish_or_release(self) -> None:
        """Let running steps finish within the grace period; release the others."""
        if self._steps:
            await asyncio.wait(set(self._steps), timeout=self._grace)
        unfinished = dict(self._steps)
        for runner in unfinished:
            runner.cancel()
        for runner in unfinished:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        # Results already queued are written before anything is released.
        pending: list[tuple[Transition, asyncio.Future[bool]]] = []
        while not self._results.empty():
            pending.append(self._results.get_nowait())
        if pending:
            await self._write(pending)
        to_release = [s.task for s in unfinished.values() if s.recorded is None]
        if to_release:
            await self._release(to_release)

    async def _release(self, tasks: list[ClaimedTask]) -> None:
        try:
            await self.engine.release(tasks)
            logger.info("released %d unfinished sub-jobs", len(tasks))
        except Exception:
            logger.warning("could not release sub-jobs: their leases will expire")


def _fail(batch: list[tuple[Transition, asyncio.Future[bool]]], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)

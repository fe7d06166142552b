"""Run by test_sqlite_store: append forever, printing each job id once its append returned.

The test SIGKILLs this process mid-stream and checks every printed job is in the file.
"""

from __future__ import annotations

import asyncio
import sys

from clipjobs.domain.commands import MarkRequestSent
from clipjobs.testing import new_job, step
from clipjobs_sqlite import SQLiteEventStore


async def _one(store: SQLiteEventStore) -> None:
    commit = new_job()
    await store.append(commit)
    second = step(commit.state, MarkRequestSent(commit.state.created_at))
    await store.append(second)
    print(f"appended {commit.job_id}", flush=True)


async def main(path: str) -> None:
    async with SQLiteEventStore(path) as store:
        while True:
            await asyncio.gather(*(_one(store) for _ in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

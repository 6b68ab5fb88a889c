"""N mocked ListImageJobs calls (``limit=10``) after 300 warm-up calls: the program
bench/README.md's testing.py section counts instructions of under callgrind (a run of
1,000 calls minus a run of none, every thread: what one mocked call costs, whatever the
machine's load).

    valgrind --tool=callgrind --callgrind-out-file=/tmp/calls-1000.out \\
        .venv/bin/python bench/testing_mock_calls.py 1000 2>/dev/null
"""

from __future__ import annotations

import sys

from huaweicloudsdkworkspaceapp.v1 import ListImageJobsRequest

import imagejobs.testing


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    request = ListImageJobsRequest(job_type="CREATE_SERVER", limit=10)
    with imagejobs.testing.mock_workspaceapp() as cloud:
        client = cloud.client()
        for _ in range(300 + calls):
            client.list_image_jobs(request)


if __name__ == "__main__":
    main()

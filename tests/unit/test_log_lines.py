"""Log lines stay whole when several processes share stderr (`run --workers N`).

structlog's PrintLogger writes a line and its newline in two write() calls, so two
workers logging at once produced `{...}{...}` and an empty line: JSON that a log
collector drops. Real processes, a real shared pipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

WRITER = """
import sys
from monitor.logs import configure_logging
import structlog
configure_logging("json", "info")
log = structlog.get_logger("tidemark").bind(worker=int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    log.info("partition_held", topic="shop.orders", partition=i % 12, offset=i)
"""


def test_lines_from_concurrent_processes_each_parse_as_json() -> None:
    processes, lines = 4, 3000
    read, write = os.pipe()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(w), str(lines)], stderr=write, stdout=write
        )
        for w in range(processes)
    ]
    os.close(write)
    with open(read, encoding="utf-8") as pipe:
        output = pipe.read().splitlines()
    for writer in writers:
        assert writer.wait(60) == 0
    broken = [line for line in output if not _parses(line)]
    assert broken == [], f"{len(broken)} broken lines, e.g. {broken[:2]}"
    assert len(output) == processes * lines


def _parses(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False

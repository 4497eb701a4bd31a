"""The README's quick start and "Sending messages" sections, run as written against the demo.

Every ``bash`` block of both sections runs, in order, in one shell (variables carry from
block to block, as in a terminal) in the directory of a running ``bisnesgpt demo``, with
one change: the README's default ports become this run's (``DemoRun.localize``). The first
block is ``make demo`` itself, which the test starts (without the venv step). A comment
line under a command that shows its answer (``# 202 {"success":true,…}``) is checked: each
``"key":value`` in it (but ``…``) must be in what the command printed. No command may fail
or answer a problem document. So the README cannot drift from the product again.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.demo import DemoRun
from tests.support.polling import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")]

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = ("## Quick start", "## Sending messages")
PROBLEM = '"type":"https://bisnesgpt.dev/problems/'
# A shown answer's "key":value pairs: strings (not "…"), numbers, true/false/null.
PAIR = re.compile(r'"(\w+)":("(?:[^"\\]|\\.)*"|true|false|null|-?\d+)')


@dataclass
class Command:
    """One shell command of a block (continuation lines joined) and the answer the README shows."""

    text: str
    shown: list[str] = field(default_factory=list)

    def expected_pairs(self) -> list[str]:
        pairs = []
        for line in self.shown:
            pairs += [f'"{k}":{v}' for k, v in PAIR.findall(line) if v != '"…"']
        return pairs


def section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    rest = text[start + len(heading):]
    following = re.search(r"^## ", rest, re.M)
    return rest[: following.start()] if following else rest


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)


def commands_of(block: str) -> list[Command]:
    commands: list[Command] = []
    pending = ""
    for line in block.splitlines():
        if pending:
            pending += "\n" + line
        elif line.startswith("#"):
            if commands:
                commands[-1].shown.append(line)
            continue
        elif line.strip():
            pending = line
        else:
            continue
        if not pending.endswith("\\"):
            commands.append(Command(pending))
            pending = ""
    assert not pending, f"a command continues past the end of its block: {pending!r}"
    return commands


def test_the_sections_are_what_the_first_hour_needs() -> None:
    text = README.read_text()
    quick, sending = (section(text, heading) for heading in SECTIONS)
    assert bash_blocks(quick)[0].strip() == "make demo"
    for name in ("WWEBJS_MEDIA_ALLOW_PRIVATE_URLS", "WWEBJS_SANDBOX_URL"):
        assert name in sending, name
    for block in bash_blocks(quick) + bash_blocks(sending):
        for command in commands_of(block):
            # The CLI is not on PATH after `make`: every command names the venv's.
            assert not re.search(r"(^|\| *)bisnesgpt ", command.text), command.text
    assert re.search(r"source \.venv/bin/activate", quick)


@pytest.mark.timeout(480)
def test_the_readmes_quick_start_and_sending_blocks_run_as_written(tmp_path: Path) -> None:
    text = README.read_text()
    blocks = [block for heading in SECTIONS for block in bash_blocks(section(text, heading))]
    assert blocks[0].strip() == "make demo"
    commands = [command for block in blocks[1:] for command in commands_of(block)]
    assert len(commands) >= 10

    demo = DemoRun(tmp_path).start()  # what `make demo` runs once .venv exists
    try:
        demo.banner()
        script = []
        for number, command in enumerate(commands):
            script += [f"echo '<<<{number}>>>'", demo.localize(command.text), "echo"]
        began = time.monotonic()
        done = demo.shell("\n".join(script) + "\n", timeout=300)
        print(f"\n[measured] the README's {len(commands)} commands: {time.monotonic() - began:.1f}s")
        outputs = re.split(r"^<<<\d+>>>\n", done.stdout, flags=re.M)[1:]
        ran = len(outputs)
        assert done.returncode == 0, (f"command {ran - 1} failed: {commands[ran - 1].text}\n"
                                      f"stdout: {outputs[-1] if outputs else ''}\nstderr: {done.stderr}")
        assert ran == len(commands)
        for command, output in zip(commands, outputs, strict=True):
            assert PROBLEM not in output, (command.text, output)
            for pair in command.expected_pairs():
                assert pair in output, (command.text, pair, output)

        # What was accepted (202, queued) goes out too: every message to the contact ends sent or later.
        created = demo.shell(".venv/bin/bisnesgpt keys create acme --name readme-test")
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip().splitlines()[-1]

        def messages() -> list[dict[str, object]]:
            answer = httpx.get(f"http://127.0.0.1:{demo.ports.api}/api/v1/messages", params={"limit": 20},
                               headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert answer.status_code == 200, answer.text
            data = json.loads(answer.text)["data"]
            return [m for m in data if m["direction"] == "outbound"]

        sent = messages()
        assert {(m["type"], m["phoneIndex"]) for m in sent} == {("text", 1), ("template", 1), ("image", 0),
                                                                ("forward", 0)}, sent
        wait_until(lambda: all(m["status"] in ("sent", "delivered", "read") for m in messages()), timeout=60,
                   what="every message of the README sent")
        assert demo.stop() == 0
    finally:
        demo.kill()

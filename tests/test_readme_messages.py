"""The README's examples for the other client APIs (Messages, embeddings), run as written on the default routes."""
from __future__ import annotations

import shlex
import subprocess
import sys

from tests.test_readme import blocks, operator  # noqa: F401  (the module's own served gateway)

SECTION = "What clients see"


def test_the_anthropic_sdk_example_works_as_written(operator):  # noqa: F811
    script = next(b for b in blocks("python", SECTION) if "import anthropic" in b)
    script = script.replace("127.0.0.1:8080", f"127.0.0.1:{operator['port']}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**operator["env"], "KEY": operator["key"]})
    assert done.returncode == 0, done.stderr
    text, usage, counted = done.stdout.strip().splitlines()
    assert text.startswith("This is the mock provider")
    assert "output_tokens=" in usage and "input_tokens=" in counted


def test_the_claude_code_environment_names_a_route_the_gateway_serves(operator):  # noqa: F811
    """The variables Claude Code reads, as the README sets them, reach a working gateway route."""
    block = next(b for b in blocks("sh", SECTION) if "ANTHROPIC_BASE_URL" in b)
    words = shlex.split(block.replace("\\\n", " "))
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    assert words[-1] == "claude"
    base = env["ANTHROPIC_BASE_URL"].replace("127.0.0.1:8080", f"127.0.0.1:{operator['port']}")
    for model in {env["ANTHROPIC_MODEL"], env["ANTHROPIC_DEFAULT_HAIKU_MODEL"]}:
        body = f'{{"model": "{model}", "max_tokens": 16, "messages": [{{"role": "user", "content": "hi"}}]}}'
        out = operator["sh"](f"curl -sf {base}/v1/messages -H 'Authorization: Bearer {operator['key']}' "
                             f"-H 'content-type: application/json' -d '{body}'").stdout
        assert '"type":"message"' in out, out


def test_the_embeddings_example_works_as_written(operator):  # noqa: F811
    script = next(b for b in blocks("python", SECTION) if "embeddings.create" in b)
    script = script.replace("127.0.0.1:8080", f"127.0.0.1:{operator['port']}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**operator["env"], "KEY": operator["key"]})
    assert done.returncode == 0, done.stderr
    count, size, tokens = map(int, done.stdout.split())
    assert (count, size) == (2, 8) and tokens > 0

"""routes.yaml: every kind of problem names its YAML path, and `gateway check` lists them all.

`parse_config` is checked problem by problem; the console script is run as a
subprocess, as a user runs it, and must never print a traceback.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config import ConfigError, parse_config
from tests.conftest import COMPLETION_SCHEMA, check_stream, joined, parse_sse

REPO = Path(__file__).resolve().parents[1]
GATEWAY = shutil.which("gateway", path=str(Path(sys.executable).parent)) or "gateway"

GOOD = """
providers:
  up: {dialect: openai, base_url: "http://127.0.0.1:9/v1", api_key: "${UP_KEY}"}
  demo: {dialect: mock}
routes:
  chat:
    aliases: [c]
    targets:
      - {provider: up, model: m, price: {input: 1, output: 2}}
  think:
    targets:
      - {provider: demo, model: reasoner, thinking: native}
      - {provider: up, model: m, thinking: {model: m-thinking}}
      - {provider: up, model: m, thinking: {params: {reasoning_effort: high}}}
"""
ENV = {"UP_KEY": "secret-value"}


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(textwrap.dedent(text), ENV if env is None else env)
    assert err.value.problems, "a ConfigError always says what is wrong"
    return err.value.problems


def paths(found: list[str]) -> list[str]:
    return [p.split(": ", 1)[0] for p in found]


def test_good_config_parses_and_interpolates():
    config = parse_config(GOOD, ENV)
    assert config.providers["up"].api_key == "secret-value"
    assert config.route_names() == {"chat": "chat", "c": "chat", "think": "think"}
    forms = [t.thinking for t in config.routes["think"].targets]
    assert forms[0].native and forms[1].model == "m-thinking" and forms[2].params == {"reasoning_effort": "high"}


def test_the_repo_default_routes_yaml_parses_without_any_environment():
    config = parse_config((REPO / "routes.yaml").read_text(), env={})
    assert config.routes and all(config.providers[t.provider].dialect == "mock"
                                 for r in config.routes.values() for t in r.targets)


@pytest.mark.parametrize("text,path", [
    ("colour: blue", "colour"),
    ("settings: {unsupported: drop}", "settings.unsupported"),
    ("settings: {limits: {max_rpm: 5, rpm: 1}}", "settings.limits.rpm"),
    ("providers: {demo: {dialect: mock, colour: red}}", "providers.demo.colour"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {targets: [{provider: demo, model: m, prise: 1}]}}",
     "routes.r.targets[0].prise"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {retry: 2, targets: [{provider: demo, model: m}]}}",
     "routes.r.retry"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {targets: [{provider: demo, model: m, price: {in: 1}}]}}",
     "routes.r.targets[0].price.in"),
], ids=lambda v: v if "\n" not in v and ":" not in v else None)
def test_unknown_key(text, path):
    found = problems(text)
    assert paths(found) == [path], found
    assert "not permitted" in found[0] or "unknown" in found[0].lower()


@pytest.mark.parametrize("text,path", [
    ("settings: {max_body_bytes: big}", "settings.max_body_bytes"),
    ("settings: {max_body_bytes: 100}", "settings.max_body_bytes"),             # min is 1024
    ("settings: {unsupported_params: ignore}", "settings.unsupported_params"),
    ("settings: {limits: {default_rpm: many}}", "settings.limits.default_rpm"),
    ("providers: []", "providers"),
    ("providers: {up: {dialect: grpc, base_url: x}}", "providers.up.dialect"),
    ("providers: {up: {dialect: openai, base_url: x, headers: [a]}}", "providers.up.headers"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {retries: lots, targets: [{provider: demo, model: m}]}}",
     "routes.r.retries"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {timeout: -1, targets: [{provider: demo, model: m}]}}",
     "routes.r.timeout"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {strategy: fastest, targets: [{provider: demo, model: m}]}}",
     "routes.r.strategy"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {aliases: x, targets: [{provider: demo, model: m}]}}",
     "routes.r.aliases"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {targets: {provider: demo, model: m}}}", "routes.r.targets"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {targets: []}}", "routes.r.targets"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {targets: [{provider: demo}]}}", "routes.r.targets[0].model"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {targets: [{provider: demo, model: m, weight: 0}]}}",
     "routes.r.targets[0].weight"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {targets: [{provider: demo, model: m, price: {input: -1}}]}}",
     "routes.r.targets[0].price.input"),
    ("providers: {demo: {dialect: mock}}\nroutes: {r: {targets: [{provider: demo, model: m}, 5]}}",
     "routes.r.targets[1]"),
])
def test_wrong_type_or_value(text, path):
    found = problems(text)
    assert paths(found) == [path], found


def test_a_target_naming_a_missing_provider():
    found = problems("""
        providers: {demo: {dialect: mock}}
        routes:
          r:
            targets:
              - {provider: demo, model: m}
              - {provider: ghost, model: m}
    """)
    assert found == ["routes.r.targets[1].provider: no provider named 'ghost'"]


def test_a_provider_without_base_url():
    found = problems("providers: {up: {dialect: openai}, claude: {dialect: anthropic}}")
    assert paths(found) == ["providers.up.base_url", "providers.claude.base_url"]


@pytest.mark.parametrize("routes,path,name", [
    ("a: {aliases: [x], targets: [T]}\n  b: {aliases: [x], targets: [T]}", "routes.b.aliases[0]", "x"),
    ("a: {aliases: [x, y, x], targets: [T]}", "routes.a.aliases[2]", "x"),
    ("a: {aliases: [a], targets: [T]}", "routes.a.aliases[0]", "a"),
    ("a: {aliases: [b], targets: [T]}\n  b: {targets: [T]}", "routes.a.aliases[0]", "b"),   # a route defined later
    ("a: {targets: [T]}\n  b: {aliases: [a], targets: [T]}", "routes.b.aliases[0]", "a"),
])
def test_duplicate_names_and_aliases(routes, path, name):
    text = "providers: {demo: {dialect: mock}}\nroutes:\n  " + routes.replace("T", "{provider: demo, model: m}")
    found = problems(text)
    assert paths(found) == [path], found
    assert repr(name) in found[0]


def test_unset_variables_are_named_with_their_path():
    found = problems("""
        providers:
          up: {dialect: openai, base_url: "${BASE}/v1", api_key: "${UP_KEY}", headers: {x-org: "${ORG}"}}
        routes: {r: {targets: [{provider: up, model: m}]}}
    """, env={"UP_KEY": "k"})
    assert found == ["providers.up.base_url: environment variable BASE is not set",
                     "providers.up.headers.x-org: environment variable ORG is not set"]


def test_set_variables_are_replaced_and_other_dollars_left_alone():
    config = parse_config("""
providers:
  up: {dialect: openai, base_url: "${BASE}/v1", api_key: "$UP_KEY-${UP_KEY}", headers: {x: "${EMPTY}"}}
""", env={"BASE": "http://h", "UP_KEY": "k${NOT_EXPANDED}", "EMPTY": ""})
    up = config.providers["up"]
    assert (up.base_url, up.api_key, up.headers) == ("http://h/v1", "$UP_KEY-k${NOT_EXPANDED}", {"x": ""})


def test_upstream_secrets_stay_out_of_the_config_repr():
    text = GOOD.replace("demo: {dialect: mock}", "demo: {dialect: mock, headers: {x-api-key: hdr-secret}}")
    config = parse_config(text, ENV)
    assert config.providers["up"].api_key == "secret-value"
    assert "secret-value" not in repr(config) and "hdr-secret" not in repr(config)


def test_problems_never_repeat_a_secret_value():
    found = problems(GOOD.replace("dialect: openai", "dialect: grpc").replace("price: {input: 1", "price: {input: -1"),
                     {"UP_KEY": "sk-secret-value-123456"})
    assert len(found) == 2 and "sk-secret-value-123456" not in str(found)


def test_duplicate_yaml_keys_are_refused_with_their_path():
    found = problems("""
        providers:
          demo: {dialect: mock}
        routes:
          r: {targets: [{provider: demo, model: m}]}
          r: {targets: [{provider: demo, model: other}]}
    """)
    assert len(found) == 1 and found[0].startswith("routes.r: duplicate key"), found
    assert "line 5" in found[0]


def test_every_duplicate_yaml_key_is_listed():
    found = problems("""
        providers:
          demo: {dialect: mock}
          demo: {dialect: mock}
        routes:
          r:
            targets:
              - {provider: demo, model: m, model: n}
    """)
    assert paths(found) == ["providers.demo", "routes.r.targets[0].model"], found


@pytest.mark.parametrize("form,path", [
    ("yes", "routes.r.targets[0].thinking"),
    ("natively", "routes.r.targets[0].thinking"),
    ("{}", "routes.r.targets[0].thinking"),
    ("{native: true}", "routes.r.targets[0].thinking"),
    ("{model: m2, params: {a: 1}}", "routes.r.targets[0].thinking"),
    ("[native]", "routes.r.targets[0].thinking"),
    ("{model: [m2]}", "routes.r.targets[0].thinking.model"),
    ("{params: x}", "routes.r.targets[0].thinking.params"),
])
def test_bad_thinking_forms(form, path):
    found = problems("providers: {demo: {dialect: mock}}\n"
                     f"routes: {{r: {{targets: [{{provider: demo, model: m, thinking: {form}}}]}}}}")
    assert paths(found) == [path], found


def test_all_problems_are_listed_at_once():
    found = problems("""
        settings: {max_body_bytes: tiny, colour: red}
        providers:
          up: {dialect: openai, base_url: "${NOPE}"}
        routes:
          a: {aliases: [b], targets: [{provider: ghost, model: m}]}
          b: {retries: -1, targets: [{provider: up, model: m, thinking: maybe}]}
    """, env={})
    assert sorted(paths(found)) == sorted([
        "settings.max_body_bytes", "settings.colour", "providers.up.base_url", "routes.a.aliases[0]",
        "routes.a.targets[0].provider", "routes.b.retries", "routes.b.targets[0].thinking"]), found


@pytest.mark.parametrize("text,line", [
    ("providers:\n  demo: {dialect: mock\nroutes: {}\n", 3),
    ("routes:\n  r:\n    targets:\n  - bad indent\n", 4),
    ("providers:\n\tdemo: {}\n", 2),
])
def test_yaml_syntax_error_gives_a_line_number(text, line):
    found = problems(text)
    assert len(found) == 1 and f"line {line}" in found[0], found


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_a_document_that_is_not_a_mapping(text):
    assert problems(text) == ["(top level): must be a mapping with settings, providers and routes"]


def test_recursive_yaml_aliases_are_a_problem_not_a_crash():
    found = problems("providers: &p {demo: {dialect: mock}, loop: *p}\n")
    assert found


# ---------------------------------------------------------------- gateway check, as a user runs it

def check(path: Path | str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run([GATEWAY, "check", "--config", str(path)], capture_output=True, text=True, timeout=30,
                          env={**run_env, **(env or {})}, cwd=Path(path).parent if Path(path).is_file() else None)


def no_traceback(result: subprocess.CompletedProcess) -> str:
    out = result.stdout + result.stderr
    assert "Traceback" not in out and 'File "' not in out, out
    return out


def test_check_passes_on_the_repo_default_routes_yaml():
    result = check(REPO / "routes.yaml")
    assert result.returncode == 0, no_traceback(result)
    assert result.stdout.startswith("ok")
    no_traceback(result)


def test_check_lists_every_problem_and_exits_1(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent("""
        settings: {unsupported_params: sometimes}
        providers:
          up: {dialect: openai, base_url: "http://h/v1", api_key: "${CHECK_TEST_UNSET}"}
          demo: {dialect: mock}
        routes:
          a: {aliases: [b], targets: [{provider: ghost, model: m}]}
          b: {targets: [{provider: demo, model: m, thinking: {model: x, params: {}}}]}
    """))
    result = check(path)
    out = no_traceback(result)
    assert result.returncode == 1
    for path_ in ("settings.unsupported_params", "providers.up.api_key", "routes.a.aliases[0]",
                  "routes.a.targets[0].provider", "routes.b.targets[0].thinking"):
        assert f"{path_}: " in out, out
    assert "CHECK_TEST_UNSET" in out


@pytest.mark.parametrize("content", [
    b"providers:\n  demo: {dialect: mock\n",              # YAML syntax
    b"\xff\xfe\x00 not utf-8 \x80\n",                     # not text
    b"- a list\n",
    b"routes:\n  r:\n    targets:\n      - {provider: demo, model: m, model: n}\n",
])
def test_check_never_prints_a_traceback(tmp_path, content):
    path = tmp_path / "routes.yaml"
    path.write_bytes(content)
    result = check(path)
    no_traceback(result)
    assert result.returncode == 1 and (result.stdout + result.stderr).strip()


def test_check_on_a_missing_file_or_a_directory(tmp_path):
    for path in (tmp_path / "nope.yaml", tmp_path):
        result = check(path)
        assert result.returncode == 1 and str(path) in no_traceback(result)


def test_check_reads_variables_from_the_environment(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD)
    assert check(path).returncode == 1
    assert check(path, env=ENV).returncode == 0


# ---------------------------------------------------------------- the default config, end to end

async def test_default_routes_yaml_works_offline_end_to_end(start_gateway):
    gw = await start_gateway(routes_yaml=(REPO / "routes.yaml").read_text())
    key = (await gw.create_key())["key"]
    client = gw.sdk(key)
    models = await client.models.list()
    assert {m.id for m in models.data} == set(parse_config((REPO / "routes.yaml").read_text(), env={}).routes)
    for model in sorted({m.id for m in models.data}):
        answer = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert answer.model == model and answer.choices[0].message.content and answer.usage.total_tokens > 0
        assert not list(COMPLETION_SCHEMA.iter_errors(answer.model_dump(exclude_unset=True)))
        resp = await gw.post(key, {"model": model, "stream": True, "stream_options": {"include_usage": True},
                                   "messages": [{"role": "user", "content": "hi"}]})
        chunks = check_stream(parse_sse(await resp.read()), model, include_usage=True)
        assert joined(chunks, "content")
    rows = await gw.rows()
    assert len(rows) == 2 * len(models.data) and {r["status"] for r in rows} == {"ok"}
    assert all(r["provider"] == "demo" for r in rows)

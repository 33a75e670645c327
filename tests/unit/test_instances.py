"""Provider instances in config (app/instances.py): each key of the dual-mode gateway seed read
into an InstanceConfig around a BackendConfig of its provider kind, and every mistake named by
the instance key as written."""
import textwrap

import pytest

from app.config import check_config, load_config
from app.errors import ErrorKind
from app.instances import BEDROCK_SHORT_NAMES, Authentication, InstancePath, Transformation
from app.metrics import Metrics
from app.routing import Router
from tests.conftest import REPO

MOCK_AWS = """
    access_key_id = "AKIDEXAMPLE"
    secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
"""

BEDROCK_US1 = """
[instances.bedrock_us1_openai]
type = "bedrock"
mode = "protocol"
protocol = "openai"
region = "us-east-1"
base_url = "http://127.0.0.1:1"
endpoints = [{ path = "/openai/bedrock_us1", methods = ["POST"] }]
model_mapping = { "house-claude" = "us.anthropic.claude-sonnet-4-5-20250929-v1:0" }
[instances.bedrock_us1_openai.authentication]
type = "aws_sigv4"
service = "bedrock-runtime"
region = "us-east-1"
""" + MOCK_AWS + """
[instances.bedrock_us1_openai.transformation]
request_from = "openai"
request_to = "bedrock_converse"
response_from = "bedrock_converse"
response_to = "openai"
options = { default_max_tokens = 4096 }
[instances.bedrock_us1_openai.metrics]
enabled = true
labels = { provider = "bedrock", region = "us-east-1", environment = "production" }
"""


def write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def problems(tmp_path, text, name="c.toml"):
    return check_config(write(tmp_path, text, name))[1]


def instance(typ, mode="protocol", extra="", name="i", protocol='protocol = "openai"\n'):
    return (f'[instances.{name}]\ntype = "{typ}"\nmode = "{mode}"\n'
            + (protocol if mode == "protocol" else "") + 'base_url = "http://127.0.0.1:1"\n' + extra)


def test_a_toml_instance_is_every_key_the_seed_writes(tmp_path):
    config = load_config(write(tmp_path, BEDROCK_US1))
    assert config.backends == {}  # an instance is not a backend: it is not routed to by model name
    i = config.instances["bedrock_us1_openai"]
    assert (i.type, i.mode, i.protocol, i.region) == ("bedrock", "protocol", "openai", "us-east-1")
    assert i.endpoints == (InstancePath("/openai/bedrock_us1", ("POST",)),)
    assert i.authentication == Authentication("aws_sigv4", service="bedrock-runtime", region="us-east-1")
    assert i.transformation == Transformation("openai", "bedrock_converse", "bedrock_converse", "openai", 4096)
    assert (i.metrics_enabled, dict(i.extra_labels)) == (True, {"environment": "production"})
    b = i.backend
    assert (b.name, b.kind, b.url, b.settings["region"], b.settings["aws_access_key_id"]) == (
        "bedrock_us1_openai", "bedrock_converse", "http://127.0.0.1:1", "us-east-1", "AKIDEXAMPLE")
    # The seed's short names, then the instance's own.
    assert dict(b.model_mapping) == {**BEDROCK_SHORT_NAMES, "house-claude": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}
    assert i.metric_labels() == {"provider": "bedrock", "mode": "protocol", "protocol": "openai",
                                 "region": "us-east-1", "instance": "bedrock_us1_openai", "environment": "production"}


def test_the_seeds_yaml_is_a_config_of_its_own_and_a_tomls_instances_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MOCK_URL", raising=False)
    alone = load_config(REPO / "configs" / "provider-instances.yaml")
    assert sorted(alone.instances) == ["anthropic_openai", "bedrock_ap1_openai", "bedrock_eu1_openai",
                                       "bedrock_openai", "bedrock_transparent", "bedrock_us1_openai"]
    assert (alone.backends, alone.models) == ({}, {})
    assert {n: (i.mode, i.region, [e.path for e in i.endpoints]) for n, i in alone.instances.items()} == {
        "bedrock_transparent": ("transparent", "us-east-1", ["/transparent/bedrock"]),
        "bedrock_us1_openai": ("protocol", "us-east-1", ["/openai/bedrock_us1"]),
        "bedrock_eu1_openai": ("protocol", "eu-west-1", ["/openai/bedrock_eu1"]),
        "bedrock_ap1_openai": ("protocol", "ap-northeast-1", ["/openai/bedrock_ap1"]),
        "bedrock_openai": ("protocol", "us-east-1", ["/openai/bedrock"]),
        "anthropic_openai": ("protocol", None, ["/openai/anthropic"]),
    }
    # The migration example's plain path strings take both methods.
    assert alone.instances["bedrock_openai"].endpoints == (InstancePath("/openai/bedrock", ("GET", "POST")),)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "provider-instances.yaml").write_text(
        (REPO / "configs" / "provider-instances.yaml").read_text())
    beside = load_config(write(tmp_path, """
        [server]
        instances_file = "configs/provider-instances.yaml"
        [backends.oa]
        protocol = "openai"
        url = "http://127.0.0.1:1/v1"
        api_key = "k"
    """))
    assert sorted(beside.instances) == sorted(alone.instances) and list(beside.backends) == ["oa"]


def test_a_vertex_location_written_as_the_kinds_own_setting_is_the_instances_region(tmp_path):
    config = load_config(write(tmp_path, instance("vertex", extra='project_id = "p"\nlocation = "europe-west4"\n'
                                                   'authentication = { type = "gcp_oauth2", token = "t" }\n')))
    i = config.instances["i"]
    assert (i.region, i.backend.settings["location"], i.metric_labels()["region"]) == \
        ("europe-west4", "europe-west4", "europe-west4")
    assert problems(tmp_path, instance("vertex", extra='project_id = "p"\nlocation = "europe-west4"\n'
                                                      'region = "us-central1"\n'
                                                      'authentication = { type = "gcp_oauth2", token = "t" }\n')) == [
        "instances.i.location: give region or location, not both"]


def test_the_type_picks_the_kind_and_request_to_or_kind_another(tmp_path):
    text = (instance("vertex", name="v_gemini", extra='project_id = "p"\nregion = "us-central1"\n'
                     'authentication = { type = "gcp_oauth2", token = "${GCP_TOKEN_FOR_TEST:-t}" }\n')
            + instance("vertex", name="v_claude", extra='project_id = "p"\nregion = "us-east5"\n'
                       'transformation = { request_to = "anthropic_messages" }\n')
            + instance("azure", name="az_responses", extra='kind = "azure_responses"\n'
                       'authentication = { type = "api_key", header = "api-key", key = "k" }\n')
            + instance("azure", name="az_bearer", extra='authentication = { type = "bearer_token", token = "t" }\n')
            + instance("ibm", name="wx", extra='project_id = "proj"\nregion = "eu-de"\n'
                       'authentication = { type = "api_key", key = "k" }\n')
            + instance("ollama", name="local", extra='transformation = { request_to = "ollama" }\n'))
    config = load_config(write(tmp_path, text))
    kinds = {n: i.backend.kind for n, i in config.instances.items()}
    assert kinds == {"v_gemini": "vertex_gemini", "v_claude": "vertex_anthropic", "az_responses": "azure_responses",
                     "az_bearer": "azure_openai", "wx": "watsonx", "local": "ollama"}
    v = config.instances["v_gemini"].backend
    assert (v.settings["project"], v.settings["location"], v.settings["access_token"]) == ("p", "us-central1", "t")
    assert config.instances["az_bearer"].backend.settings["auth"] == "bearer"
    assert config.instances["az_bearer"].backend.resolve_api_key() == "t"
    wx = config.instances["wx"].backend
    assert (wx.settings["project_id"], wx.settings["region"], wx.resolve_api_key()) == ("proj", "eu-de", "k")


def test_without_authentication_the_types_usual_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    text = instance("anthropic", name="an") + instance("openrouter", name="orr")
    config = load_config(write(tmp_path, text))
    an = config.instances["an"]
    assert (an.authentication, an.backend.resolve_api_key()) == (Authentication("api_key", header="x-api-key"),
                                                                 "from-env")
    assert config.instances["orr"].authentication.type == "bearer_token"
    assert problems(tmp_path, text) == ["instances.orr.authentication: OPENROUTER_API_KEY not set in environment"]


def test_a_bedrock_region_from_the_environment_when_none_is_written(tmp_path, monkeypatch):
    text = instance("bedrock", name="b")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert problems(tmp_path, text) == [
        "instances.b.region: required for a bedrock instance (or AWS_REGION / AWS_DEFAULT_REGION in the environment)"]
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert load_config(write(tmp_path, text)).instances["b"].backend.settings["region"] == "eu-west-1"


def test_secrets_by_env_are_read_per_request_and_named_when_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("INSTANCE_TEST_KEY", raising=False)
    text = instance("anthropic", name="an", extra='authentication = { type = "api_key", key = "${INSTANCE_TEST_KEY}" }\n')
    config = load_config(write(tmp_path, text))  # loads: a missing key must not stop the others
    assert config.instances["an"].backend.resolved_key() is None
    assert problems(tmp_path, text) == ["instances.an.authentication.key: INSTANCE_TEST_KEY not set in environment"]


@pytest.mark.parametrize("extra,problem", [
    ('region = "us-east-1"\nauthentication = { type = "api_key", key = "k" }\n',
     "instances.i.authentication.type: a bedrock instance is not authorised by 'api_key' (it takes aws_sigv4)"),
    ('region = "us-east-1"\nauthentication = { type = "aws_sigv4", service = "s3" }\n',
     "instances.i.authentication.service: Bedrock Runtime is signed as bedrock (bedrock-runtime or bedrock), not 's3'"),
    ('region = "us-east-1"\nauthentication = { type = "aws_sigv4", region = "eu-west-1" }\n',
     "instances.i.authentication.region: 'eu-west-1' is not the instance's region 'us-east-1' "
     "(a request is signed for the region it goes to)"),
    ('region = "us-east-1"\nauthentication = { type = "aws_sigv4", token = "t" }\n',
     "instances.i.authentication.token: aws_sigv4 has no token (its keys: access_key_id, profile, region, "
     "secret_access_key, service, session_token, type)"),
    ('region = "us-east-1"\nproject_id = "p"\n',
     "instances.i.project_id: a bedrock instance has no project (only vertex and ibm have)"),
    ('region = "us-east-1"\ntransformation = { request_to = "anthropic_messages" }\n',
     "instances.i.transformation.request_to: a bedrock instance cannot be called in anthropic_messages "
     "(it speaks bedrock_converse)"),
    ('region = "us-east-1"\ntransformation = { request_to = "bedrock_invoke" }\n',
     "instances.i.transformation.request_to: unknown format 'bedrock_invoke' (known: bedrock_converse, "
     "anthropic_messages, vertex_gemini, ibm_generation, oracle_cohere, openai, openai_chat, openai_responses, "
     "anthropic, vertex_anthropic, gemini, ibm_chat, watsonx, ollama)"),
    ('region = "us-east-1"\ntransformation = { request_to = "bedrock_converse", response_from = "anthropic_messages" }\n',
     "instances.i.transformation.response_from: a provider answers in the format it is called in "
     "(request_to 'bedrock_converse'), not 'anthropic_messages'"),
    ('region = "us-east-1"\ntransformation = { request_from = "openai", response_to = "anthropic" }\n',
     "instances.i.transformation.response_to: a client reads replies in the protocol it sent "
     "(request_from 'openai'), not 'anthropic'"),
    ('region = "us-east-1"\ntransformation = { request_from = "gemini" }\n',
     "instances.i.transformation.request_from: 'gemini' is not the instance's protocol (openai): "
     "its clients call under /openai/"),
    ('region = "us-east-1"\ntransformation = { options = { default_max_tokens = 0 } }\n',
     "instances.i.transformation.options.default_max_tokens: must be a positive integer"),
    ('region = "us-east-1"\nendpoints = ["/anthropic/i"]\n',
     "instances.i.endpoints[0]: a protocol-mode endpoint is /openai/ and one path segment (/openai/i), "
     "not '/anthropic/i'"),
    ('region = "us-east-1"\nendpoints = [{ path = "/openai/a/b" }]\n',
     "instances.i.endpoints[0].path: a protocol-mode endpoint is /openai/ and one path segment (/openai/i), "
     "not '/openai/a/b'"),
    ('region = "us-east-1"\nendpoints = [{ path = "/openai/i", methods = ["GET"] }]\n',
     "instances.i.endpoints[0].methods: a protocol-mode endpoint serves generation by POST"),
    ('region = "us-east-1"\nendpoints = [{ path = "/openai/i", methods = ["FETCH"] }]\n',
     "instances.i.endpoints[0].methods: must be a list of HTTP methods (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS)"),
    ('region = "us-east-1"\nmetrics = { labels = { "team-name" = "x" } }\n',
     "instances.i.metrics.labels.team-name: not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not __…)"),
    ('region = "us-east-1"\nmetrics = { labels = { status = "x" } }\n',
     "instances.i.metrics.labels.status: status is the request's own label"),
    ('region = "us-east-1"\nmetrics = { labels = { region = "eu-west-1" } }\n',
     "instances.i.metrics.labels.region: 'eu-west-1' is not the instance's region ('us-east-1'); "
     "the built-in labels come from the instance"),
    ('region = "us-east-1"\nmetrics = { enabled = "yes" }\n', "instances.i.metrics.enabled: must be true or false"),
    ('region = "us-east-1"\nkind = "anthropic"\n', "instances.i.kind: a bedrock instance is one of bedrock_converse "
     "(got 'anthropic')"),
    ('region = "us-east-1"\ncolour = "red"\n', "instances.i.colour: unknown key (allowed: authentication, "
     "aws_access_key_id, aws_secret_access_key, aws_session_token, base_url, capabilities, connect_timeout, "
     "endpoint, endpoints, forward_headers, kind, metrics, mode, model_mapping, options, passthrough, profile, "
     "project_id, protocol, region, timeout, transformation, type)"),
])
def test_each_mistake_is_named_by_its_key(tmp_path, extra, problem):
    assert problems(tmp_path, instance("bedrock", extra=extra)) == [problem]


@pytest.mark.parametrize("text,problem", [
    (instance("anthropic", extra='authentication = { type = "api_key", header = "api-key", key = "k" }\n'),
     "instances.i.authentication.header: an anthropic instance sends its key in x-api-key, not 'api-key'"),
    (instance("azure", extra='authentication = { type = "api_key", header = "x-api-key", key = "k" }\n'),
     "instances.i.authentication.header: an azure instance sends its key in api-key, not 'x-api-key'"),
    (instance("ibm", extra='project_id = "p"\nauthentication = { type = "api_key", header = "apikey", key = "k" }\n'),
     "instances.i.authentication.header: an ibm instance exchanges its key for IAM tokens (no header), not 'apikey'"),
    (instance("openai", extra='authentication = { type = "gcp_oauth2", token = "t" }\n'),
     "instances.i.authentication.type: an openai instance is not authorised by 'gcp_oauth2' (it takes bearer_token)"),
    (instance("vertex", extra='project_id = "p"\n'),
     "instances.i.region: required for a vertex instance (its location: us-central1, europe-west4, global, ...)"),
    (instance("openai", mode="transparent", extra='protocol = "openai"\n'),
     "instances.i.protocol: a transparent instance is called in its provider's own API (only protocol mode has "
     "a client protocol)"),
    (instance("openai", mode="transparent", extra='transformation = { request_to = "openai" }\n'),
     "instances.i.transformation: a transparent instance passes the provider's API through untouched "
     "(only protocol mode transforms)"),
    (instance("openai", mode="transparent", extra='endpoints = ["/openai/i"]\n'),
     "instances.i.endpoints[0]: a transparent-mode endpoint is /transparent/ and one path segment "
     "(/transparent/i), not '/openai/i'"),
    (instance("openai", protocol=""), "instances.i.protocol: required in protocol mode (one of openai, anthropic, gemini)"),
    (instance("openai", protocol='protocol = "grpc"\n'),
     "instances.i.protocol: unknown protocol 'grpc' (one of openai, anthropic, gemini)"),
    (instance("watson"), "instances.i.type: unknown type 'watson' (one of bedrock, azure, openai, anthropic, vertex, "
     "gemini, ibm, oracle, openrouter, ollama, runpod)"),
    (instance("openai", mode="relay"), "instances.i.mode: unknown mode 'relay' (one of transparent, protocol)"),
    (instance("openai", extra='endpoint = "http://127.0.0.1:2"\n'),
     "instances.i.endpoint: give base_url or endpoint, not both (the provider's address)"),
    ('[instances.i]\ntype = "openai"\nmode = "protocol"\nprotocol = "openai"\nbase_url = "ftp://x"\n',
     "instances.i.base_url: must start with http:// or https:// (got 'ftp://x')"),
    ('[instances.i]\ntype = "ibm"\nmode = "protocol"\nprotocol = "openai"\n'
     'authentication = { type = "api_key", key = "k" }\n',
     "instances.i: backend i: give exactly one of project_id and space_id"),
    (instance("openai", name="a", extra='endpoints = ["/openai/shared"]\nauthentication = { type = "bearer_token", token = "t" }\n')
     + instance("openai", name="b", extra='endpoints = ["/openai/shared"]\nauthentication = { type = "bearer_token", token = "t" }\n'),
     "instances.b.endpoints[0].path: /openai/shared is instances.a's already"),
    ('[backends.oa]\nprotocol = "openai"\nurl = "http://127.0.0.1:1/v1"\napi_key = "k"\n'
     + instance("openai", name="oa"),
     "instances.oa: the name is a backend's too (backends.oa); an instance needs its own"),
])
def test_each_load_error(tmp_path, text, problem):
    assert problems(tmp_path, text) == [problem]


def test_a_yaml_config_names_the_bad_key_as_the_seed_writes_it(tmp_path):
    text = """
        instances:
          bedrock_us1_openai:
            type: bedrock
            mode: protocol
            protocol: openai
            region: us-east-1
            transformation:
              request_from: openai
              request_to: vertex_gemini
              response_from: vertex_gemini
              response_to: openai
    """
    assert problems(tmp_path, text, "provider-instances.yaml") == [
        "instances.bedrock_us1_openai.transformation.request_to: a bedrock instance cannot be called in "
        "vertex_gemini (it speaks bedrock_converse)"]


def test_instances_are_pinned_only_by_path_never_routed_by_model(tmp_path):
    text = BEDROCK_US1 + instance("bedrock", mode="transparent", name="bedrock_transparent",
                                  extra='region = "us-east-1"\nendpoints = ["/transparent/bedrock"]\n') + """
        [backends.bedrock]
        kind = "bedrock_converse"
        region = "us-east-1"
        model_mapping = { "claude-3-sonnet" = "anthropic.claude-3-sonnet-20240229-v1:0" }
        [instances.anthropic_openai]
        type = "anthropic"
        mode = "protocol"
        protocol = "anthropic"
        authentication = { type = "api_key", key = "k" }
    """
    router = Router(load_config(write(tmp_path, text)))
    assert [m.id for m in router.models()] == ["claude-3-sonnet"]  # the backend's, not the instances'
    r = router.route("claude-3-sonnet", frozenset({"text"}), "bedrock_us1", "openai")
    assert (r.backend.name, r.upstream_model, r.reason, r.instance.name) == (
        "bedrock_us1_openai", "anthropic.claude-3-sonnet-20240229-v1:0", "explicit", "bedrock_us1_openai")
    r = router.route("anthropic.claude-3-sonnet-20240229-v1:0", frozenset({"text"}), "bedrock_us1_openai", "openai")
    assert (r.backend.name, r.upstream_model) == ("bedrock_us1_openai", "anthropic.claude-3-sonnet-20240229-v1:0")
    r = router.route("claude-3-sonnet", frozenset({"text"}), "bedrock", "openai")  # a backend, as before
    assert (r.backend.name, r.instance, r.reason) == ("bedrock", None, "explicit")
    r = router.route("claude-3-sonnet", frozenset({"text"}))
    assert (r.backend.name, r.reason) == ("bedrock", "model_mapping")
    for segment, prefix, status, code in (("nope", "openai", 404, "instance_not_found"),
                                          ("bedrock_transparent", "openai", 400, "wrong_mode"),
                                          ("anthropic_openai", "openai", 400, "wrong_protocol")):
        with pytest.raises(Exception) as e:
            router.pin(segment, prefix)
        assert (e.value.status, e.value.code) == (status, code)
    with pytest.raises(Exception) as e:
        router.pin("bedrock_transparent", "openai")
    assert e.value.kind is ErrorKind.invalid_request
    assert e.value.message == ("This endpoint requires transparent mode: instance 'bedrock_transparent' is served "
                               "in transparent mode at /transparent/bedrock; /openai/bedrock_transparent is protocol mode")


def test_metrics_count_each_instance_with_the_union_of_extra_labels(tmp_path):
    text = BEDROCK_US1 + instance("anthropic", name="quiet", extra='authentication = { type = "api_key", key = "k" }\n'
                                  'metrics = { enabled = false }\n') + instance(
        "anthropic", name="team", extra='authentication = { type = "api_key", key = "k" }\n'
        'metrics = { labels = { team = "search" } }\n')
    config = load_config(write(tmp_path, text))
    from app.instances import extra_label_names
    metrics = Metrics(instance_labels=extra_label_names(config.instances))
    for name in ("bedrock_us1_openai", "quiet", "team"):
        metrics.count_instance(config.instances[name], "POST", 200)
    body = metrics.render()[0].decode()
    lines = sorted(line for line in body.splitlines() if line.startswith("http_requests_total{"))
    assert lines == [  # nothing for `quiet`: its metrics are disabled
        'http_requests_total{environment="",instance="team",method="POST",mode="protocol",protocol="openai",'
        'provider="anthropic",region="",status="200",team="search"} 1.0',
        'http_requests_total{environment="production",instance="bedrock_us1_openai",method="POST",mode="protocol",'
        'protocol="openai",provider="bedrock",region="us-east-1",status="200",team=""} 1.0',
    ]


def test_an_endpoints_methods_are_honoured_on_the_models_list(monkeypatch):
    from app.server import create_app
    monkeypatch.delenv("MOCK_URL", raising=False)
    client = create_app(load_config(REPO / "configs" / "provider-instances.yaml")).test_client()
    r = client.get("/openai/bedrock_us1/models")  # methods: [POST]
    assert (r.status_code, r.headers["Allow"], r.get_json()["error"]["message"]) == (
        405, "POST", "Method GET is not allowed on /openai/bedrock_us1/models.")
    r = client.get("/openai/bedrock_eu1/models")  # no methods: GET and POST
    assert r.status_code == 200
    assert [m["id"] for m in r.get_json()["data"]] == list(BEDROCK_SHORT_NAMES)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'instance="bedrock_us1_openai",method="GET",mode="protocol",protocol="openai",provider="bedrock",' \
           'region="us-east-1",status="405"} 1.0' in text

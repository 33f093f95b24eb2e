"""Tests of the files under deploy/: they parse, and every image, port, variable, job and metric
they name exists in the code or in the other files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deployfiles import (
    COMPOSE,
    DASHBOARD,
    DEPLOY,
    DOCKERFILE,
    KUBERNETES,
    PROCESSOR_JOB,
    PROMETHEUS_CONFIG,
    RULES,
    SENSOR_JOB,
    Query,
    dashboard,
    dashboard_panels,
    dashboard_queries,
    flag_env_names,
    interpolated_names,
    kubernetes_object,
    kubernetes_objects,
    metric_names,
    rule_queries,
    rules,
    subcommand_default,
    substitute_grafana_variables,
    yaml_documents,
    yaml_file,
)

from antinex import broker

SENSOR_IMAGE, PROCESSOR_IMAGE = "antinex-sensor", "antinex-processor"
# Capabilities the sensor's packet socket needs: the socket itself, promiscuous mode and a
# receive buffer above the system limit.
SENSOR_CAPABILITIES = {"NET_RAW", "NET_ADMIN"}


@pytest.fixture(autouse=True)
def code_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags keep their defaults from the code, whatever the shell running the tests exports."""
    for name in flag_env_names():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml_file(COMPOSE)


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    assert name in compose["services"], f"docker-compose.yml has no {name} service"
    return compose["services"][name]


def dockerfile_stages() -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.M | re.I))


def dockerfile_stage(name: str) -> str:
    """The instructions of one stage of the Dockerfile."""
    text = DOCKERFILE.read_text()
    match = re.search(rf"^FROM\s+\S+\s+AS\s+{name}\s*$(.*?)(?=^FROM\s|\Z)", text, re.M | re.S)
    assert match, f"the Dockerfile has no stage {name}"
    return match.group(1)


def port_of(target: str) -> int:
    return int(target.rsplit(":", 1)[1])


def pod_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


def container_env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def metrics_port(subcommand: str) -> int:
    return subcommand_default(subcommand, "metrics_port")


class TestFilesParse:
    def test_every_yaml_file_under_deploy_parses(self) -> None:
        """Compose, Prometheus, Grafana provisioning and every Kubernetes manifest are YAML."""
        paths = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))
        assert len(paths) >= 15
        for path in paths:
            assert yaml_documents(path), f"{path.relative_to(DEPLOY)} holds no document"

    def test_every_kubernetes_object_names_its_kind_and_namespace(self) -> None:
        for path, obj in kubernetes_objects():
            assert {"apiVersion", "kind", "metadata"} <= obj.keys(), path.name
            if obj["kind"] not in ("Namespace", "KafkaTopic"):
                assert "antinex" == obj["metadata"].get("namespace"), f"{path.name} {obj['kind']}"

    def test_kustomization_lists_every_manifest_but_the_kafka_topics(self) -> None:
        listed = set(yaml_file(KUBERNETES / "kustomization.yaml")["resources"])
        present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
        assert present - {"strimzi-topics.yaml"} == listed

    @pytest.mark.prometheus
    def test_prometheus_accepts_the_compose_configuration(self) -> None:
        if shutil.which("promtool") is None:
            pytest.skip("promtool is not installed (Debian package prometheus)")
        done = subprocess.run(
            ["promtool", "check", "config", PROMETHEUS_CONFIG.name],
            cwd=PROMETHEUS_CONFIG.parent,
            capture_output=True,
            text=True,
        )
        assert 0 == done.returncode, done.stdout + done.stderr


class TestEnvironmentVariables:
    def test_compose_sets_only_variables_that_are_twins_of_flags(self, compose: dict) -> None:
        valid = flag_env_names()
        for name, spec in compose["services"].items():
            used = {key for key in spec.get("environment", {}) if key.startswith("ANTINEX_")}
            assert set() == used - valid, f"service {name}"

    def test_compose_reads_only_antinex_variables_that_are_twins_of_flags(self) -> None:
        referenced = interpolated_names(COMPOSE.read_text())
        assert set() == {n for n in referenced if n.startswith("ANTINEX_")} - flag_env_names()

    def test_the_dockerfile_sets_only_variables_that_are_twins_of_flags(self) -> None:
        names = set(re.findall(r"\b(ANTINEX_[A-Z0-9_]+)=", DOCKERFILE.read_text()))
        assert names
        assert set() == names - flag_env_names()

    def test_kubernetes_sets_only_variables_that_are_twins_of_flags(self) -> None:
        valid = flag_env_names()
        config = kubernetes_object("ConfigMap", "antinex-config")["data"]
        assert set() == set(config) - valid
        for _, obj in kubernetes_objects():
            if obj["kind"] in ("DaemonSet", "Deployment"):
                for container in pod_containers(obj):
                    assert set() == set(container_env(container)) - valid, obj["kind"]

    def test_every_setting_is_a_value_its_flag_accepts(
        self, compose: dict, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """What compose, the images and Kubernetes put in ANTINEX_* variables, flags accept.

        Every subcommand reads its variables when the parser is built, so one bad value stops
        every command of a container; the parser is built once per place that sets them, with
        compose's ${NAME:-default} read as its default.
        """
        from antinex.cli import build_parser

        places = {
            f"compose {name}": spec.get("environment", {})
            for name, spec in compose["services"].items()
        }
        places["Dockerfile"] = dict(re.findall(r"\b(ANTINEX_\w+)=(\S+)", DOCKERFILE.read_text()))
        places["ConfigMap"] = kubernetes_object("ConfigMap", "antinex-config")["data"]
        for _, obj in kubernetes_objects():
            if obj["kind"] in ("DaemonSet", "Deployment"):
                env = container_env(pod_containers(obj)[0])
                places[obj["kind"]] = {k: v for k, v in env.items() if isinstance(v, str)}
        for place, settings in places.items():
            with monkeypatch.context() as patch:
                for name, value in settings.items():
                    if name.startswith("ANTINEX_"):
                        value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
                        patch.setenv(name, value)
                try:
                    build_parser()
                except Exception as err:  # UsageError names the variable and the value
                    pytest.fail(f"{place}: {err}")


class TestImages:
    def test_compose_builds_each_image_from_a_stage_of_the_dockerfile(self, compose: dict) -> None:
        stages = dockerfile_stages()
        for name, image in (("sensor", SENSOR_IMAGE), ("processor", PROCESSOR_IMAGE)):
            spec = service(compose, name)
            assert Path("deploy/docker/Dockerfile") == Path(spec["build"]["dockerfile"])
            assert (DEPLOY / spec["build"]["context"]).resolve() == DEPLOY.parent
            assert spec["build"]["target"] in stages
            assert image == spec["image"].split(":")[0]

    def test_the_dockerfile_installs_the_project_on_python_3_11_slim(self) -> None:
        text = DOCKERFILE.read_text()
        assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
        assert "pip install ." in text

    def test_the_image_build_copies_every_package_pyproject_installs(self) -> None:
        import tomllib

        pyproject = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
        included = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
        packages = {pattern.rstrip("*") for pattern in included}
        copied = set(re.findall(r"^COPY (\w+) \1$", DOCKERFILE.read_text(), re.M))
        assert packages == copied
        # The build context is filtered by the Dockerfile's own ignore file: all but these go.
        ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
        assert {"*", "!pyproject.toml", "!README.md"} <= set(ignore)
        assert {f"!{package}/" for package in packages} <= set(ignore)

    def test_the_processor_image_runs_as_a_user_and_the_sensor_image_runs_the_sensor(self) -> None:
        processor = dockerfile_stage("processor")
        user = re.search(r"^USER\s+(\S+)", processor, re.M)
        assert user and not user.group(1).startswith(("0", "root"))
        assert '["process"]' in processor
        assert '["sensor"]' in dockerfile_stage("sensor")

    def test_kubernetes_runs_the_images_compose_builds(self) -> None:
        sensor = kubernetes_object("DaemonSet", "antinex-sensor")
        processor = kubernetes_object("Deployment", "antinex-processor")
        assert SENSOR_IMAGE == pod_containers(sensor)[0]["image"].split(":")[0]
        assert PROCESSOR_IMAGE == pod_containers(processor)[0]["image"].split(":")[0]
        assert ["sensor"] == pod_containers(sensor)[0]["args"]
        assert ["process"] == pod_containers(processor)[0]["args"]

    def test_the_subcommands_the_images_run_exist(self) -> None:
        assert 9108 == metrics_port("sensor")  # raises LookupError when there is no subcommand
        assert metrics_port("process")


class TestKafka:
    def test_compose_runs_kafka_4_in_kraft_mode_as_the_local_broker_does(
        self, compose: dict
    ) -> None:
        kafka = service(compose, "kafka")
        assert f"apache/kafka:${{KAFKA_VERSION:-{broker.DEFAULT_VERSION}}}" == kafka["image"]
        assert broker.DEFAULT_VERSION.startswith("4.")
        env = kafka["environment"]
        assert {"broker", "controller"} == set(env["KAFKA_PROCESS_ROLES"].split(","))
        assert "CONTROLLER" == env["KAFKA_CONTROLLER_LISTENER_NAMES"]

    def test_broker_and_topics_take_the_sensor_s_largest_message(self, compose: dict) -> None:
        from capture.publisher import MAX_MESSAGE_BYTES

        broker_limit = service(compose, "kafka")["environment"]["KAFKA_MESSAGE_MAX_BYTES"]
        assert int(broker_limit) >= MAX_MESSAGE_BYTES
        script = "\n".join(service(compose, "kafka-topics")["command"])
        sizes = [int(n) for n in re.findall(r"max\.message\.bytes=(\d+)", script)]
        assert sizes and min(sizes) >= MAX_MESSAGE_BYTES
        for _, obj in kubernetes_objects():
            if obj["kind"] == "KafkaTopic":
                assert int(obj["spec"]["config"]["max.message.bytes"]) >= MAX_MESSAGE_BYTES

    def test_the_topics_service_creates_the_topics_the_pipeline_uses(self, compose: dict) -> None:
        topics = service(compose, "kafka-topics")
        env = topics["environment"]
        script = "\n".join(topics["command"])
        for variable in (
            "ANTINEX_PACKETS_TOPIC",
            "ANTINEX_ALERTS_TOPIC",
            "ANTINEX_PROCESSOR_DEAD_LETTER_TOPIC",
        ):
            assert variable in env
            assert f'create "$${variable}"' in script
        assert "${PACKETS_PARTITIONS:-" in env["PACKETS_PARTITIONS"]
        for name in ("sensor", "processor"):
            wait = service(compose, name)["depends_on"]["kafka-topics"]["condition"]
            assert "service_completed_successfully" == wait

    def test_topic_defaults_agree_with_the_code(self, compose: dict) -> None:
        defaults = {
            "ANTINEX_PACKETS_TOPIC": subcommand_default("sensor", "packets_topic"),
            "ANTINEX_ALERTS_TOPIC": subcommand_default("process", "alerts_topic"),
            "ANTINEX_PROCESSOR_DEAD_LETTER_TOPIC": subcommand_default(
                "process", "dead_letter_topic"
            ),
        }
        assert defaults["ANTINEX_PACKETS_TOPIC"] == subcommand_default("process", "packets_topic")
        env = service(compose, "kafka-topics")["environment"]
        config = kubernetes_object("ConfigMap", "antinex-config")["data"]
        for variable, default in defaults.items():
            assert f"${{{variable}:-{default}}}" == env[variable]
            assert default == config[variable]
            assert kubernetes_object("KafkaTopic", default)


class TestPrivileges:
    def test_compose_sensor_captures_on_the_host_with_only_the_capabilities_it_needs(
        self, compose: dict
    ) -> None:
        sensor = service(compose, "sensor")
        assert "host" == sensor["network_mode"]
        assert ["ALL"] == sensor["cap_drop"]
        assert SENSOR_CAPABILITIES == set(sensor["cap_add"])
        assert not sensor.get("privileged")

    def test_compose_processor_has_no_capability_and_can_be_scaled(self, compose: dict) -> None:
        processor = service(compose, "processor")
        assert ["ALL"] == processor["cap_drop"]
        assert "cap_add" not in processor
        # `--scale processor=N` needs replicas that claim no fixed name or host port.
        assert "container_name" not in processor
        assert "ports" not in processor
        assert "deploy" not in processor or "replicas" not in processor["deploy"]

    def test_kubernetes_sensor_uses_the_host_network_and_only_needed_capabilities(self) -> None:
        sensor = kubernetes_object("DaemonSet", "antinex-sensor")
        pod = sensor["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True
        assert "ClusterFirstWithHostNet" == pod["dnsPolicy"]
        security = pod_containers(sensor)[0]["securityContext"]
        assert ["ALL"] == security["capabilities"]["drop"]
        assert SENSOR_CAPABILITIES == set(security["capabilities"]["add"])
        assert security["allowPrivilegeEscalation"] is False
        assert not security.get("privileged")

    def test_kubernetes_processor_runs_as_a_user_without_capabilities(self) -> None:
        processor = kubernetes_object("Deployment", "antinex-processor")
        pod = processor["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert 0 != pod["securityContext"]["runAsUser"]
        security = pod_containers(processor)[0]["securityContext"]
        assert ["ALL"] == security["capabilities"]["drop"]
        assert "add" not in security["capabilities"]


class TestKubernetesWiring:
    def test_the_processor_mounts_the_model_volume_where_its_flag_points(self) -> None:
        processor = kubernetes_object("Deployment", "antinex-processor")
        container = pod_containers(processor)[0]
        model_dir = container_env(container)["ANTINEX_PROCESSOR_MODEL"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in processor["spec"]["template"]["spec"]["volumes"]}
        (name,) = [n for n, m in mounts.items() if m["mountPath"] == model_dir]
        assert mounts[name]["readOnly"] is True
        claim = volumes[name]["persistentVolumeClaim"]["claimName"]
        assert kubernetes_object("PersistentVolumeClaim", claim)

    def test_the_autoscaler_scales_the_processor_up_to_one_replica_per_partition(self) -> None:
        hpa = kubernetes_object("HorizontalPodAutoscaler", "antinex-processor")
        target = hpa["spec"]["scaleTargetRef"]
        assert ("Deployment", "antinex-processor") == (target["kind"], target["name"])
        partitions = kubernetes_object("KafkaTopic", "antinex.packets")["spec"]["partitions"]
        config = kubernetes_object("ConfigMap", "antinex-config")["data"]
        assert partitions == hpa["spec"]["maxReplicas"] == int(config["ANTINEX_SENSOR_PARTITIONS"])

    def test_services_select_the_pods_and_servicemonitors_select_the_services(self) -> None:
        for job, workload in ((SENSOR_JOB, "DaemonSet"), (PROCESSOR_JOB, "Deployment")):
            pods = kubernetes_object(workload, job)["spec"]["template"]["metadata"]["labels"]
            svc = kubernetes_object("Service", job)
            assert svc["spec"]["selector"].items() <= pods.items()
            monitor = kubernetes_object("ServiceMonitor", job)
            selector = monitor["spec"]["selector"]["matchLabels"]
            assert selector.items() <= svc["metadata"]["labels"].items()
            port_names = {p["name"] for p in svc["spec"]["ports"]}
            assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names

    def test_the_prometheus_rule_holds_the_same_groups_as_rules_yml(self) -> None:
        rule = kubernetes_object("PrometheusRule", "antinex")
        assert yaml_file(RULES)["groups"] == rule["spec"]["groups"]


class TestMetricsPortsAndJobs:
    @pytest.mark.parametrize(("subcommand", "job", "name"), [
        ("sensor", SENSOR_JOB, "sensor"),
        ("process", PROCESSOR_JOB, "processor"),
    ])  # fmt: skip
    def test_every_place_agrees_on_the_metrics_port(
        self, compose: dict, subcommand: str, job: str, name: str
    ) -> None:
        port = metrics_port(subcommand)
        env = f"ANTINEX_{name.upper()}_METRICS_PORT"
        assert port == int(service(compose, name)["environment"][env])
        assert re.search(rf"^EXPOSE {port}$", dockerfile_stage(name), re.M)

        scrape = {j["job_name"]: j for j in yaml_file(PROMETHEUS_CONFIG)["scrape_configs"]}[job]
        ports = [port_of(t) for c in scrape.get("static_configs", []) for t in c["targets"]]
        ports += [c["port"] for c in scrape.get("dns_sd_configs", [])]
        assert [port] == ports

        workload = kubernetes_object("DaemonSet" if name == "sensor" else "Deployment", job)
        container = pod_containers(workload)[0]
        assert [port] == [p["containerPort"] for p in container["ports"]]
        assert str(port) == container_env(container)[env]
        assert [port] == [p["port"] for p in kubernetes_object("Service", job)["spec"]["ports"]]

    def test_metrics_endpoints_listen_beyond_loopback_in_containers(self, compose: dict) -> None:
        for name in ("sensor", "processor"):
            env = f"ANTINEX_{name.upper()}_METRICS_ADDRESS"
            assert "0.0.0.0" == service(compose, name)["environment"][env]
            assert f"ENV {env}=0.0.0.0" in dockerfile_stage(name)

    def test_prometheus_discovers_every_processor_replica(self) -> None:
        scrape = {j["job_name"]: j for j in yaml_file(PROMETHEUS_CONFIG)["scrape_configs"]}
        (dns,) = scrape[PROCESSOR_JOB]["dns_sd_configs"]
        assert (["processor"], "A") == (dns["names"], dns["type"])

    def test_prometheus_reaches_the_host_network_sensor_through_the_host_gateway(
        self, compose: dict
    ) -> None:
        scrape = {j["job_name"]: j for j in yaml_file(PROMETHEUS_CONFIG)["scrape_configs"]}
        (static,) = scrape[SENSOR_JOB]["static_configs"]
        host = static["targets"][0].rsplit(":", 1)[0]
        assert f"{host}:host-gateway" in service(compose, "prometheus")["extra_hosts"]

    def test_rules_and_dashboard_select_only_jobs_that_are_scraped(self) -> None:
        jobs = {j["job_name"] for j in yaml_file(PROMETHEUS_CONFIG)["scrape_configs"]}
        assert {SENSOR_JOB, PROCESSOR_JOB} <= jobs
        texts = [q.expr for q in dashboard_queries()] + [r["expr"] for r in rules()]
        selected = {job for text in texts for job in re.findall(r'job="([^"]+)"', text)}
        assert {SENSOR_JOB, PROCESSOR_JOB} == selected
        services = {
            o["metadata"]["name"] for _, o in kubernetes_objects() if o["kind"] == "Service"
        }
        assert selected <= services  # a ServiceMonitor's `job` label is its Service's name

    def test_compose_mounts_the_prometheus_files_where_the_configuration_expects_them(
        self, compose: dict
    ) -> None:
        mounts = service(compose, "prometheus")["volumes"]
        assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
        assert yaml_file(PROMETHEUS_CONFIG)["rule_files"] == ["rules.yml"]
        assert "./prometheus/rules.yml:/etc/prometheus/rules.yml:ro" in mounts


def grouping_cases() -> list[Any]:
    """Every dashboard query and alert condition."""
    queries = dashboard_queries() + [
        Query(f"alert {r['alert']}", r["expr"]) for r in rules() if "alert" in r
    ]
    return [pytest.param(q, id=q.where) for q in queries]


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every series name the sensor and the processor export, with the labels each declares."""
    from prometheus_client import REGISTRY

    import capture.metrics  # noqa: F401  (registers the sensor's metrics)
    import stream_processor.metrics  # noqa: F401

    # A labelled metric has no samples before its first use, so names come from the type.
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
        "gauge": ("",),
    }
    names: dict[str, set[str] | None] = {}
    for family in REGISTRY.collect():
        collector = REGISTRY._names_to_collectors.get(family.name)
        labels: set[str] | None = set(getattr(collector, "_labelnames", ()))
        if family.type == "info":
            labels = None  # an info metric's labels are the keys of whatever it is given
        for suffix in suffixes.get(family.type, ("",)):
            names[family.name + suffix] = (
                labels | {"le"} if labels is not None and suffix == "_bucket" else labels
            )
    return names


class TestMetricNames:
    def test_rules_read_only_metrics_the_code_exports(self, exported: dict) -> None:
        for rule in rules():
            assert set() == metric_names(rule["expr"]) - exported.keys(), rule.get("alert")

    def test_dashboard_reads_only_metrics_the_code_exports(self, exported: dict) -> None:
        for query in dashboard_queries():
            assert set() == metric_names(query.expr) - exported.keys(), query.where

    @pytest.mark.parametrize("query", grouping_cases())
    def test_queries_group_by_labels_their_metrics_carry(
        self, exported: dict, query: Query
    ) -> None:
        """`by (label)` and `{{label}}` in a legend name labels of the metrics queried."""
        declared = [exported[name] for name in metric_names(query.expr)]
        if None in declared:
            pytest.skip("an info metric: its labels are not declared up front")
        carried = {"job", "instance"}.union(*declared)
        grouped = {
            label.strip()
            for group in re.findall(r"\bby\s*\(([^)]*)\)", query.expr)
            for label in group.split(",")
        }
        grouped |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", query.legend))
        assert set() == grouped - carried


class TestDashboard:
    def test_panels_have_unique_ids_and_fit_the_grid_without_overlapping(self) -> None:
        panels = dashboard_panels()
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids))
        taken: set[tuple[int, int]] = set()
        for panel in panels:
            grid = panel["gridPos"]
            assert all(isinstance(grid[k], int) for k in "xywh"), panel["title"]
            assert 0 <= grid["x"] and grid["w"] > 0 and grid["h"] > 0
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                     for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
            assert set() == cells & taken, f"{panel['title']} overlaps another panel"
            taken |= cells

    def test_every_panel_queries_the_chosen_prometheus_data_source(self) -> None:
        board = dashboard()
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert ("datasource", "prometheus") == (
            variables["datasource"]["type"],
            variables["datasource"]["query"],
        )
        for panel in dashboard_panels(board):
            assert {"type": "prometheus", "uid": "${datasource}"} == panel["datasource"]
            assert panel["title"] and panel["type"] in ("stat", "timeseries", "heatmap", "table")
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), panel["title"]
            for target in panel["targets"]:
                assert target["expr"].strip(), panel["title"]
                assert panel["datasource"] == target["datasource"]

    def test_queries_use_no_variable_a_test_cannot_stand_in_for(self) -> None:
        for panel in dashboard_panels():
            for target in panel["targets"]:
                substitute_grafana_variables(target["expr"])

    def test_the_dashboard_shows_what_an_operator_watches(self) -> None:
        text = " ".join(q.expr for q in dashboard_queries())
        for metric in (
            "antinex_sensor_packets_captured_total",
            "antinex_sensor_kernel_drops_total",
            "antinex_sensor_records_dropped_total",
            "antinex_sensor_records_published_total",
            "antinex_processor_records_scored_total",
            "antinex_processor_alerts_published_total",
            "antinex_processor_score_bucket",
            "antinex_processor_capture_to_verdict_seconds_bucket",
            "antinex_processor_consumer_lag",
            "antinex_processor_records_dead_lettered_total",
            "antinex_processor_model_info",
            'up{job="antinex-processor"}',
        ):
            assert metric in text

    def test_grafana_provisions_the_data_source_and_the_dashboard_compose_mounts(
        self, compose: dict
    ) -> None:
        grafana = service(compose, "grafana")
        provisioning = DEPLOY / "grafana" / "provisioning"
        (source,) = yaml_file(provisioning / "datasources" / "prometheus.yml")["datasources"]
        assert ("prometheus", "http://prometheus:9090") == (source["type"], source["url"])
        assert source["isDefault"] is True
        (provider,) = yaml_file(provisioning / "dashboards" / "antinex.yml")["providers"]
        binds = [v.rsplit(":", 1)[0] for v in grafana["volumes"] if v.startswith("./")]
        mounts = dict(bind.split(":", 1) for bind in binds)
        assert provider["options"]["path"] == mounts["./grafana/dashboards"]
        assert "/etc/grafana/provisioning" == mounts["./grafana/provisioning"]
        home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        assert f"{provider['options']['path']}/{DASHBOARD.name}" == home

    def test_scrape_interval_and_grafana_interval_agree(self) -> None:
        provisioned = yaml_file(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
        (source,) = provisioned["datasources"]
        scrape_interval = yaml_file(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
        assert scrape_interval == source["jsonData"]["timeInterval"]


class TestRuleOperands:
    """The helper that cuts alert conditions into the operands the live test evaluates."""

    def test_a_threshold_leaves_its_left_hand_side(self) -> None:
        from deployfiles import condition_operands

        assert ["sum(rate(x[5m]))"] == condition_operands("sum(rate(x[5m])) > 0")

    def test_set_operators_and_matching_modifiers_are_cut_away(self) -> None:
        from deployfiles import condition_operands

        expr = 'a{l="x>y"} > 100 and on (p) b / on () group_left c >= bool 2'
        assert ['a{l="x>y"}', "b / on () group_left c"] == condition_operands(expr)

    def test_absent_yields_what_it_checks_for(self) -> None:
        from deployfiles import condition_operands

        assert ['up{job="j"}'] == condition_operands('absent(up{job="j"})')

    def test_every_alert_has_an_operand_to_evaluate(self) -> None:
        names = {q.where.split(" operand")[0] for q in rule_queries()}
        assert {f"alert {r['alert']}" for r in rules() if "alert" in r} <= names

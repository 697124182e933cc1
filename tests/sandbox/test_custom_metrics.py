"""The sandbox's custom metrics API: real gateways' ``/metrics`` scraped over loopback HTTP and
served on ``custom.metrics.k8s.io/v1beta2`` as prometheus-adapter answers (shapes cited in
``sandbox/store/custom_metrics.py``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from sandbox.apiserver.auth import Authenticator
from sandbox.apiserver.server import ApiServer, create_app
from sandbox.controllers.custom_metrics import GatewayScraper, parse_series, scrape_target
from sandbox.store.store import PODS, Store

TOKEN = "t"
NAMESPACE = "kube-llm"
METRIC = "kube_llm_chats_active"

# What backend/metrics.py exposes (prometheus_client's text format), trimmed.
GATEWAY_TEXT = """\
# HELP kube_llm_inflight Chats running now.
# TYPE kube_llm_inflight gauge
kube_llm_inflight {inflight}
# HELP kube_llm_queue_depth Chats waiting for a slot.
# TYPE kube_llm_queue_depth gauge
kube_llm_queue_depth {waiting}
# HELP kube_llm_requests_total Chats answered.
# TYPE kube_llm_requests_total counter
kube_llm_requests_total{{code="200"}} 7.0
"""


class Gateway:
    """A loopback HTTP server answering /metrics with the gateway's text (or 500 when broken)."""

    def __init__(self, inflight: float, waiting: float) -> None:
        self.inflight, self.waiting, self.broken = inflight, waiting, False
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if gateway.broken or self.path != "/metrics":
                    self.send_error(500 if gateway.broken else 404)
                    return
                body = GATEWAY_TEXT.format(inflight=gateway.inflight, waiting=gateway.waiting)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pod(name: str, *, scrape: bool = True, phase: str = "Running") -> dict[str, Any]:
    annotations = (
        {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "8000",
            "prometheus.io/path": "/metrics",
        }
        if scrape
        else {}
    )
    return {
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "llm-backend"},
            "annotations": annotations,
        },
        "spec": {"containers": [{"name": "backend", "ports": [{"containerPort": 8000}]}]},
        "status": {"phase": phase},
    }


class Runtime:
    """The API server's view of the sandbox, with the scraper as ``cluster._Runtime`` wires it."""

    def __init__(self, scraper: GatewayScraper) -> None:
        self.scraper = scraper

    def pod_port(self, namespace: str, pod: str, port: str | int) -> int | None:
        return None

    def pod_metrics(self, namespace: str | None) -> list[dict[str, Any]]:
        return []

    def log_path(self, namespace: str, pod: str, container: str | None) -> None:
        return None

    def custom_metrics(
        self, namespace: str, metric: str, pods: list[str], metric_selector: str | None
    ) -> dict[str, Any]:
        return self.scraper.metric_value_list(namespace, metric, pods, metric_selector)


@pytest.fixture
def gateways() -> Iterator[dict[str, Gateway]]:
    running = {"llm-backend-a": Gateway(3, 1), "llm-backend-b": Gateway(1, 0.0)}
    yield running
    for gateway in running.values():
        gateway.close()


def cluster(gateways: dict[str, Gateway]) -> tuple[Store, GatewayScraper]:
    store = Store()
    for name in gateways:
        store.create(PODS, pod(name), NAMESPACE)
    store.create(PODS, pod("llm-backend-unscraped", scrape=False), NAMESPACE)

    def pod_port(namespace: str, name: str, port: str | int) -> int | None:
        gateway = gateways.get(name)
        return gateway.port if gateway is not None and str(port) == "8000" else None

    return store, GatewayScraper(store, pod_port)


def scrape(scraper: GatewayScraper) -> None:
    async def once() -> None:
        async with httpx2.AsyncClient() as client:
            await scraper.scrape_once(client)

    asyncio.run(once())


def api(store: Store, scraper: GatewayScraper) -> TestClient:
    return TestClient(create_app(ApiServer(store, Runtime(scraper), Authenticator(TOKEN))))


AUTH = {"Authorization": f"Bearer {TOKEN}"}
PATH = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods"


def test_parse_series_sums_each_name_and_refuses_what_is_not_the_format() -> None:
    assert parse_series(GATEWAY_TEXT.format(inflight=2, waiting=3)) == {
        "kube_llm_inflight": 2.0,
        "kube_llm_queue_depth": 3.0,
        "kube_llm_requests_total": 7.0,
    }
    with pytest.raises(ValueError, match=r"."):
        parse_series("kube_llm_inflight one two three\n")


def test_prometheus_scrapes_only_annotated_running_pods() -> None:
    assert scrape_target(pod("a")) == ("8000", "/metrics")
    assert scrape_target(pod("a", scrape=False)) is None
    assert scrape_target(pod("a", phase="Pending")) is None
    bare = pod("a")
    del bare["metadata"]["annotations"]["prometheus.io/port"]
    del bare["metadata"]["annotations"]["prometheus.io/path"]
    assert scrape_target(bare) == ("8000", "/metrics")


def test_discovery_lists_the_group_and_the_pods_metric(gateways: dict[str, Gateway]) -> None:
    store, scraper = cluster(gateways)
    with api(store, scraper) as http:
        groups = http.get("/apis", headers=AUTH).json()["groups"]
        custom = next(g for g in groups if g["name"] == "custom.metrics.k8s.io")
        assert custom["preferredVersion"]["groupVersion"] == "custom.metrics.k8s.io/v1beta2"
        listing = http.get("/apis/custom.metrics.k8s.io/v1beta2", headers=AUTH).json()
        assert listing["kind"] == "APIResourceList"
        assert listing["resources"] == [
            {
                "name": f"pods/{METRIC}",
                "singularName": "",
                "namespaced": True,
                "kind": "MetricValueList",
                "verbs": ["get"],
            }
        ]


def test_the_metric_is_in_flight_plus_waiting_per_scraped_pod(
    gateways: dict[str, Gateway],
) -> None:
    store, scraper = cluster(gateways)
    scrape(scraper)
    with api(store, scraper) as http:
        response = http.get(
            f"{PATH}/*/{METRIC}",
            params={"labelSelector": "app.kubernetes.io/name=llm-backend"},
            headers=AUTH,
        )
        assert response.status_code == 200
        body = response.json()
        assert body["kind"] == "MetricValueList"
        assert body["apiVersion"] == "custom.metrics.k8s.io/v1beta2"
        values = {item["describedObject"]["name"]: item["value"] for item in body["items"]}
        assert values == {"llm-backend-a": "4", "llm-backend-b": "1"}
        item = body["items"][0]
        assert item["describedObject"] == {
            "kind": "Pod",
            "namespace": NAMESPACE,
            "name": "llm-backend-a",
            "apiVersion": "/v1",
        }
        assert item["metric"] == {"name": METRIC}
        assert item["timestamp"].endswith("Z")
        gateways["llm-backend-b"].inflight = 2.5
        scrape(scraper)
        one = http.get(f"{PATH}/llm-backend-b/{METRIC}", headers=AUTH).json()
        assert [i["value"] for i in one["items"]] == ["2500m"]
        # a selector that matches no pod: an empty list, as the adapter answers
        none = http.get(
            f"{PATH}/*/{METRIC}", params={"labelSelector": "app=other"}, headers=AUTH
        ).json()
        assert none["items"] == []
        # a metric label selector is matched against the series' labels (pod labels, pod)
        chosen = http.get(
            f"{PATH}/*/{METRIC}",
            params={"metricLabelSelector": "pod=llm-backend-a"},
            headers=AUTH,
        ).json()
        assert [i["describedObject"]["name"] for i in chosen["items"]] == ["llm-backend-a"]
        assert chosen["items"][0]["metric"]["selector"] == {"matchLabels": {"pod": "llm-backend-a"}}


def test_a_metric_the_adapter_does_not_serve_is_a_404_status(
    gateways: dict[str, Gateway],
) -> None:
    store, scraper = cluster(gateways)
    with api(store, scraper) as http:
        # before any scrape: no series yet, so the adapter does not serve it either
        early = http.get(f"{PATH}/*/{METRIC}", headers=AUTH)
        assert early.status_code == 404
        scrape(scraper)
        response = http.get(f"{PATH}/*/kube_llm_nonsense", headers=AUTH)
        assert response.status_code == 404
        assert response.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "the server could not find the metric kube_llm_nonsense for pods",
            "reason": "NotFound",
            "code": 404,
        }
        unscraped = http.get(f"{PATH}/llm-backend-unscraped/{METRIC}", headers=AUTH)
        assert unscraped.status_code == 404
        assert unscraped.json()["message"] == (
            f"the server could not find the metric {METRIC} for pods llm-backend-unscraped"
        )
        assert (
            http.get(
                f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/x/pods/*/{METRIC}", headers=AUTH
            ).status_code
            == 404
        )
        services = http.get(
            f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/services/*/{METRIC}",
            headers=AUTH,
        )
        assert services.status_code == 404
        assert "pods only" in services.json()["message"]
        anonymous = http.get(f"{PATH}/*/{METRIC}", headers={})
        assert anonymous.status_code == 403
        assert 'User "system:anonymous" cannot get resource "pods/' in anonymous.json()["message"]
        wrong = http.get(f"{PATH}/*/{METRIC}", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401


def test_a_gateway_whose_metrics_do_not_answer_drops_out_until_it_answers(
    gateways: dict[str, Gateway],
) -> None:
    store, scraper = cluster(gateways)
    scrape(scraper)
    gateways["llm-backend-a"].broken = True
    scrape(scraper)
    assert scraper.pod_values(NAMESPACE, METRIC, ["llm-backend-a", "llm-backend-b"]) == {
        "llm-backend-b": 1000
    }
    gateways["llm-backend-a"].broken = False
    scrape(scraper)
    assert scraper.pod_values(NAMESPACE, METRIC, ["llm-backend-a"]) == {"llm-backend-a": 4000}
    # a deleted pod's series end with it
    store.delete(PODS, NAMESPACE, "llm-backend-a")
    scrape(scraper)
    assert ("kube-llm", "llm-backend-a") not in scraper.latest

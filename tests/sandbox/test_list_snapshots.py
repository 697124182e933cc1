"""A paged list is one consistent list, as the API server's etcd3 store serves it.

Upstream's integration test `TestAPIListChunking` (test/integration/apiserver/apiserver_test.go)
creates an object between two pages and expects the pager's whole list to leave it out and to
carry the first page's resourceVersion. The same rules hold here for changes and deletions, for
`resourceVersionMatch=Exact`, and for what `ListOptions` validation refuses (docs/reliability.md
X16).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from sandbox.store.resources import CONFIGMAPS
from sandbox.store.store import ApiError, Store
from tests.sandbox.harness import RunningSandbox, fake_engine_cmd, start_sandbox
from tests.sandbox.test_bad_input import BASE, status_of

pytestmark = pytest.mark.slow(reason="a live sandbox behind the tests of consistent list pages")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("snapshots"), engine_cmd=fake_engine_cmd(busy_ms_per_token=0)
    )
    yield running
    running.stop()


def _configmap(name: str, label: str, value: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"set": label}}, "data": {"v": value}}


def _make(client: httpx2.Client, label: str, names: list[str]) -> None:
    for name in names:
        made = client.post(f"{BASE}/configmaps", json=_configmap(name, label))
        assert made.status_code == 201, made.text


def _page(client: httpx2.Client, params: dict[str, str]) -> dict[str, Any]:
    response = client.get(f"{BASE}/configmaps", params=params)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_later_pages_show_the_list_as_it_was_at_the_first(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        _make(client, "paged", [f"cm-{index}" for index in range(6)])
        first = _page(client, {"labelSelector": "set=paged", "limit": "2"})
        assert [item["metadata"]["name"] for item in first["items"]] == ["cm-0", "cm-1"]
        first_rv = first["metadata"]["resourceVersion"]
        # Between the pages: one added after the cut, one changed, one deleted, one added
        # before the cut (none of which the first page's list had in this state).
        _make(client, "paged", ["cm-4a", "cm-00"])
        changed = client.patch(
            f"{BASE}/configmaps/cm-3",
            json={"data": {"v": "2"}},
            headers={"content-type": "application/merge-patch+json"},
        )
        assert changed.status_code == 200, changed.text
        assert client.delete(f"{BASE}/configmaps/cm-5").status_code == 200
        items = list(first["items"])
        params = {
            "labelSelector": "set=paged",
            "limit": "2",
            "continue": first["metadata"]["continue"],
        }
        while True:
            listed = _page(client, params)
            assert listed["metadata"]["resourceVersion"] == first_rv
            items += listed["items"]
            token = listed["metadata"].get("continue")
            if not token:
                break
            params = {**params, "continue": token}
        names = [item["metadata"]["name"] for item in items]
        assert names == [f"cm-{index}" for index in range(6)]
        by_name = {item["metadata"]["name"]: item for item in items}
        assert by_name["cm-3"]["data"] == {"v": "1"}
        assert "cm-5" in by_name  # deleted after the first page, listed as it was
        # A new list sees today's objects.
        now = _page(client, {"labelSelector": "set=paged"})
        assert [item["metadata"]["name"] for item in now["items"]] == [
            "cm-0",
            "cm-00",
            "cm-1",
            "cm-2",
            "cm-3",
            "cm-4",
            "cm-4a",
        ]


def test_an_exact_list_reads_its_resource_version(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        _make(client, "exact", ["ex-a", "ex-b"])
        before = _page(client, {"labelSelector": "set=exact"})
        rv = before["metadata"]["resourceVersion"]
        _make(client, "exact", ["ex-c"])
        assert client.delete(f"{BASE}/configmaps/ex-a").status_code == 200
        for params in (
            {"resourceVersion": rv, "resourceVersionMatch": "Exact"},
            # The legacy case: a limit and a resourceVersion without a match are exact too.
            {"resourceVersion": rv, "limit": "10"},
        ):
            old = _page(client, {"labelSelector": "set=exact", **params})
            assert [item["metadata"]["name"] for item in old["items"]] == ["ex-a", "ex-b"]
            assert old["metadata"]["resourceVersion"] == rv
        newer = _page(
            client,
            {
                "labelSelector": "set=exact",
                "resourceVersion": rv,
                "resourceVersionMatch": "NotOlderThan",
            },
        )
        assert [item["metadata"]["name"] for item in newer["items"]] == ["ex-b", "ex-c"]
        current = int(newer["metadata"]["resourceVersion"])
        future = client.get(
            f"{BASE}/configmaps",
            params={"resourceVersion": str(current + 1000), "resourceVersionMatch": "Exact"},
        )
        assert future.status_code == 504, future.text
        status = status_of(future)
        assert status["reason"] == "Timeout"
        assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_lists_older_than_the_history_are_410(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        _make(client, "compacted", ["co-a", "co-b", "co-c"])
        first = _page(client, {"labelSelector": "set=compacted", "limit": "1"})
        rv = first["metadata"]["resourceVersion"]
        _make(client, "compacted", ["co-d"])
        client.post("/sandbox/faults", json={"compact": True}).raise_for_status()
        continued = client.get(
            f"{BASE}/configmaps",
            params={
                "labelSelector": "set=compacted",
                "limit": "1",
                "continue": first["metadata"]["continue"],
            },
        )
        assert continued.status_code == 410, continued.text
        assert "continue parameter is too old" in status_of(continued)["message"]
        exact = client.get(
            f"{BASE}/configmaps", params={"resourceVersion": rv, "resourceVersionMatch": "Exact"}
        )
        assert exact.status_code == 410, exact.text
        assert (
            status_of(exact)["message"] == "The resourceVersion for the provided list is too old."
        )
        # The sandbox keeps serving: a fresh list has all four.
        assert len(_page(client, {"labelSelector": "set=compacted"})["items"]) == 4


@pytest.mark.parametrize(
    ("params", "messages"),
    [
        (
            {"resourceVersionMatch": "Exact"},
            ["resourceVersionMatch is forbidden unless resourceVersion is provided"],
        ),
        (
            {"resourceVersionMatch": "Sometimes", "resourceVersion": "5"},
            ['Unsupported value: "Sometimes"'],
        ),
        (
            {"resourceVersionMatch": "Exact", "resourceVersion": "0"},
            ['resourceVersionMatch "exact" is forbidden for resourceVersion "0"'],
        ),
        (
            {"resourceVersionMatch": "NotARealMatch"},
            ["forbidden unless resourceVersion is provided", 'Unsupported value: "NotARealMatch"'],
        ),
    ],
)
def test_list_options_the_api_server_refuses_are_422(
    sandbox: RunningSandbox, params: dict[str, str], messages: list[str]
) -> None:
    with sandbox.http() as client:
        response = client.get(f"{BASE}/configmaps", params=params)
        assert response.status_code == 422, response.text
        status = status_of(response)
        assert status["reason"] == "Invalid"
        assert status["message"].startswith('ListOptions.meta.k8s.io "" is invalid: ')
        for message in messages:
            assert message in status["message"]
        assert len(status["details"]["causes"]) == len(messages)


def test_the_store_undoes_later_changes_for_a_snapshot() -> None:
    store = Store(history_size=10)
    configmaps = CONFIGMAPS
    store.create(configmaps, {"metadata": {"name": "a"}, "data": {"v": "1"}}, "ns")
    at = store.resource_version
    store.update(configmaps, {"metadata": {"name": "a", "namespace": "ns"}, "data": {"v": "2"}})
    store.create(configmaps, {"metadata": {"name": "b"}}, "ns")
    assert [obj["data"] for obj in store.list(configmaps, "ns", at=at)] == [{"v": "1"}]
    assert [obj["metadata"]["name"] for obj in store.list(configmaps, "ns")] == ["a", "b"]
    for _ in range(12):  # push `at` out of the history
        store.create(configmaps, {"metadata": {"generateName": "x-"}}, "ns")
    with pytest.raises(ApiError, match="too old resource version"):
        store.list(configmaps, "ns", at=at)

"""Settings come from the environment, with defaults, and bad values fail clearly."""

from __future__ import annotations

import pytest

from backend.settings import Settings, SettingsError


def test_defaults_follow_the_contract() -> None:
    settings = Settings.from_env({})
    assert settings.engine_url == "http://127.0.0.1:11434"
    assert settings.model == "tinyllama"
    assert settings.models == ("tinyllama",)
    assert settings.max_inflight == 4
    assert (settings.max_queue, settings.queue_timeout) == (16, 30)
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)
    assert settings.shutdown_timeout == 20
    assert settings.engine_transport == "aiohttp"
    assert settings.warmup is False
    assert settings.pod_name


def test_every_variable_is_read() -> None:
    env = {
        "ENGINE_URL": "http://10.0.0.1:8080/",
        "MODEL": "smollm2:135m",
        "MODELS": "smollm2:135m, tinyllama",
        "MAX_INFLIGHT": "7",
        "FIRST_TOKEN_TIMEOUT": "2.5",
        "REQUEST_TIMEOUT": "30",
        "ENGINE_READ_TIMEOUT": "4",
        "MAX_BODY_BYTES": "2048",
        "MAX_MESSAGES": "3",
        "MAX_MESSAGE_CHARS": "100",
        "MAX_TOTAL_CHARS": "250",
        "MAX_TOKENS_CAP": "64",
        "POD_NAME": "llm-backend-abc",
        "HOST": "127.0.0.1",
        "PORT": "9000",
        "SHUTDOWN_TIMEOUT": "5",
        "LOG_LEVEL": "DEBUG",
        "ENGINE_TRANSPORT": "HTTPX",
        "WARMUP": "True",
        "MAX_QUEUE": "0",
        "QUEUE_TIMEOUT": "2.5",
    }
    settings = Settings.from_env(env)
    assert settings.engine_url == "http://10.0.0.1:8080"
    assert settings.models == ("smollm2:135m", "tinyllama")
    assert settings.max_inflight == 7
    assert settings.first_token_timeout == 2.5
    assert settings.request_timeout == 30
    assert settings.engine_read_timeout == 4
    assert settings.max_body_bytes == 2048
    assert settings.max_messages == 3
    assert settings.max_message_chars == 100
    assert settings.max_total_chars == 250
    assert settings.max_tokens_cap == 64
    assert settings.pod_name == "llm-backend-abc"
    assert (settings.host, settings.port) == ("127.0.0.1", 9000)
    assert settings.shutdown_timeout == 5
    assert settings.log_level == "debug"
    assert settings.engine_transport == "httpx"
    assert settings.warmup is True
    assert (settings.max_queue, settings.queue_timeout) == (0, 2.5)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"MAX_INFLIGHT": "many"}, "MAX_INFLIGHT must be a whole number"),
        ({"MAX_INFLIGHT": "0"}, "MAX_INFLIGHT must be at least 1"),
        ({"FIRST_TOKEN_TIMEOUT": "-1"}, "FIRST_TOKEN_TIMEOUT must be greater than 0"),
        ({"REQUEST_TIMEOUT": "nan"}, "REQUEST_TIMEOUT must be a finite number"),
        ({"FIRST_TOKEN_TIMEOUT": "20", "REQUEST_TIMEOUT": "10"}, "must not exceed"),
        ({"ENGINE_URL": "localhost:11434"}, "ENGINE_URL must be an http"),
        ({"ENGINE_URL": "http://host:port"}, "ENGINE_URL has an invalid port"),
        ({"PORT": "70000"}, "PORT must be between 0 and 65535"),
        ({"MODEL": "a", "MODELS": "b,c"}, "MODEL 'a' must be one of MODELS"),
        ({"MODELS": "a,,b", "MODEL": "a"}, "MODELS must be a comma-separated list"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of"),
        ({"POD_NAME": "pod name"}, "POD_NAME must not contain spaces"),
        (
            {"ENGINE_TRANSPORT": "httpcore"},
            "ENGINE_TRANSPORT must be one of aiohttp, httpx, got 'httpcore'",
        ),
        ({"WARMUP": "maybe"}, "WARMUP must be true or false, got 'maybe'"),
        ({"MAX_QUEUE": "-1"}, "MAX_QUEUE must be 0 or more, got -1"),
        ({"QUEUE_TIMEOUT": "0"}, "QUEUE_TIMEOUT must be greater than 0"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env(env)


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_a_hand_built_settings_checks_the_engine_transport() -> None:
    with pytest.raises(SettingsError, match="ENGINE_TRANSPORT must be one of aiohttp, httpx"):
        Settings(pod_name="p", engine_transport="h2")

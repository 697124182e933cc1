"""JSON log lines. Callers put structured values in ``extra={"fields": {...}}``, never text."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

__all__ = ["JsonFormatter", "log_config"]

# json.dumps(line, default=str), with the encoder made once rather than for every line.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as JSON: time, level, logger, message, pod and extra fields."""
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        pod = os.environ.get("POD_NAME")
        if pod:
            line["pod"] = pod
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line)


def log_config(level: str) -> dict[str, Any]:
    """Return a ``logging.config.dictConfig`` dict sending every logger through JSON."""
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "backend": {"handlers": ["stderr"], "level": upper, "propagate": False},
        },
    }

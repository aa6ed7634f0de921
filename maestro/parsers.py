"""DRF's JSON parser, made strict: every operator API body goes through `json_loads_strict`
(depth limit, finite numbers, no NUL, no lone surrogates, strict UTF-8), so the rules live in one
place for DRF and for the data plane alike."""

from __future__ import annotations

from django.conf import settings
from rest_framework.parsers import JSONParser

from maestro.jsonstrict import json_loads_strict


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        # Django has already bounded the body (DATA_UPLOAD_MAX_MEMORY_SIZE = MCP_MAX_REQUEST_BYTES).
        raw = stream.read() if stream is not None else b""
        return json_loads_strict(raw, max_depth=settings.MCP_MAX_JSON_DEPTH)

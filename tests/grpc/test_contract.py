"""The wire contract: generated stubs match the proto, and every domain error has its status."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from maestro import errors
from mcp.grpc import gateway_pb2
from mcp.grpc.status import GRPC_STATUS, status_for
from mcp.upstream import errors as upstream_errors

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ["gateway_pb2.py", "gateway_pb2_grpc.py", "gateway_pb2.pyi"]


def makefile_protoc_args() -> list[str]:
    """The arguments of `make grpc-stubs`, so this check and the make target cannot drift apart."""
    recipe = re.search(r"^grpc-stubs:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "the Makefile has no grpc-stubs target"
    command = recipe.group(1).split()
    assert command[:3] == ["$(PY)", "-m", "grpc_tools.protoc"], command
    return command[3:]


def test_committed_stubs_match_the_proto(tmp_path):
    # Given the proto and the make target's protoc command, writing into a temporary folder
    args = [re.sub(r"_out=\.$", f"_out={tmp_path}", arg) for arg in makefile_protoc_args()]
    # When the stubs are generated afresh
    result = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # Then the committed ones are identical: otherwise run `make grpc-stubs`
    for name in GENERATED:
        fresh = (tmp_path / "mcp" / "grpc" / name).read_text()
        committed = (ROOT / "mcp" / "grpc" / name).read_text()
        assert committed == fresh, f"mcp/grpc/{name} is out of date with gateway.proto: run `make grpc-stubs`"


def test_the_service_is_the_documented_one():
    service = gateway_pb2.DESCRIPTOR.services_by_name["McpGateway"]
    assert service.full_name == "maestro.mcp.v1.McpGateway"
    assert sorted(m.name for m in service.methods) == ["Invoke", "ListTools"]
    assert gateway_pb2.InvokeRequest.DESCRIPTOR.fields_by_name["arguments"].message_type.full_name == "google.protobuf.Struct"


def _error_classes(module) -> list[type]:
    return [c for _, c in inspect.getmembers(module, inspect.isclass) if issubclass(c, errors.GatewayError) and c is not errors.GatewayError]


@pytest.mark.parametrize("cls", _error_classes(errors), ids=lambda c: c.__name__)
def test_every_domain_error_is_in_the_table(cls):
    assert cls in GRPC_STATUS, f"{cls.__name__} has no gRPC status in mcp.grpc.status.GRPC_STATUS"
    assert status_for(cls("x")) not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK)


@pytest.mark.parametrize("cls, code", [
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.UpstreamTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (upstream_errors.UpstreamTimedOut, grpc.StatusCode.DEADLINE_EXCEEDED),
    (upstream_errors.UpstreamUnreachable, grpc.StatusCode.UNAVAILABLE),
    (errors.RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
])
def test_errors_map_by_class_hierarchy(cls, code):
    # A subclass (the upstream client's typed failures) maps through its domain parent.
    assert status_for(cls("x")) is code


def test_an_error_outside_the_table_is_internal():
    class Odd(errors.GatewayError):
        pass

    assert status_for(Odd("x")) is grpc.StatusCode.INTERNAL

"""`model: python:pkg.mod:attr` names a pydantic-ai Model in code: the demo's scripted model, or a mistake."""

from __future__ import annotations

import pytest
from pydantic_ai.models.function import FunctionModel

from durable_agents_api.config import ModelSpec
from durable_agents_runtime.errors import AgentLoadError
from durable_agents_runtime.models import resolve_model


def test_a_python_model_path_resolves_to_the_model_instance_in_code() -> None:
    model = resolve_model("python:durable_agents_runtime.demo:model", ModelSpec())
    assert isinstance(model, FunctionModel)


def test_a_python_model_path_naming_something_else_says_what_it_found() -> None:
    with pytest.raises(AgentLoadError, match=r"is a FunctionToolset, not a pydantic-ai Model"):
        resolve_model("python:durable_agents_runtime.demo:toolset", ModelSpec())


def test_a_python_model_path_to_a_missing_module_names_the_module() -> None:
    with pytest.raises(AgentLoadError, match=r"cannot import module 'no_such_module'"):
        resolve_model("python:no_such_module:model", ModelSpec())

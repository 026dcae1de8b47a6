"""The models a worker uses: provider models with the SDK's own retries off, `python:` models from code.

Temporal's retry policy owns retries, so provider SDKs are built with `max_retries=0`. A run's model
override (`RunInput.model`) is resolved the same way as the agent's own model, by `run_time_model_resolver`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from pydantic_ai.exceptions import UserError
from pydantic_ai.models import Model, infer_model
from pydantic_ai.settings import ModelSettings
from temporalio import workflow

from durable_agents_api.config import ModelSpec
from durable_agents_api.contract import PYTHON_MODEL_PREFIX
from durable_agents_runtime.entrypoints import import_object
from durable_agents_runtime.errors import AgentLoadError

if TYPE_CHECKING:
    from pydantic_ai.capabilities import ModelIdResolver
    from pydantic_ai.models import ModelResolutionContext
    from pydantic_ai.providers import Provider

__all__ = ["model_streams", "resolve_model", "run_time_model_resolver", "without_sdk_retries"]


_OPENAI_PROVIDERS = ("openai", "openai-chat", "openai-responses")


def _provider(name: str, *, base_url: str | None) -> Provider[Any]:
    """Providers with the SDK's own retries off: Temporal's retry policy owns retries."""
    if name in _OPENAI_PROVIDERS:
        from openai import AsyncOpenAI
        from pydantic_ai.providers.openai import OpenAIProvider

        # An OpenAI-compatible server given by base URL often needs no key; the SDK insists on one.
        api_key = os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
        client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
        return OpenAIProvider(openai_client=client)
    if name == "anthropic":
        from anthropic import AsyncAnthropic
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicProvider(anthropic_client=AsyncAnthropic(max_retries=0))
    from pydantic_ai.providers import infer_provider

    try:
        return infer_provider(name)
    except ValueError:
        raise UserError(f"unknown model provider {name!r}") from None


def _infer(name: str, model: ModelSpec) -> Model:
    """Build the model named `name`; raises `UserError` (which fails a run at once) if that is impossible."""
    if name.startswith(PYTHON_MODEL_PREFIX):
        return _python_model(name.removeprefix(PYTHON_MODEL_PREFIX))
    try:
        return infer_model(name, provider_factory=partial(_provider, base_url=model.base_url))
    except UserError as exc:
        raise UserError(
            f"cannot use model {name!r}: {str(exc).rstrip('.')}. Name a model as pydantic-ai does, e.g. "
            "'openai-chat:gpt-4.1-mini', 'anthropic:claude-sonnet-4-5' or 'test'"
        ) from None
    except Exception as exc:
        # Provider SDKs raise their own errors for missing credentials (e.g. openai.OpenAIError).
        raise UserError(
            f"cannot use model {name!r}: {str(exc).rstrip('.')}. Set the provider's API key in the "
            "environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...)"
        ) from None


def _python_model(path: str) -> Model:
    """`python:pkg.mod:attr`: a pydantic-ai `Model` instance from code (scripted or self-hosted models)."""
    try:
        found = import_object(path, what="model")
    except AgentLoadError as exc:
        raise UserError(str(exc)) from None
    if not isinstance(found, Model):
        raise UserError(
            f"model 'python:{path}' is a {type(found).__name__}, not a pydantic-ai Model: point it at a "
            "Model instance (e.g. a FunctionModel)"
        )
    return found


def resolve_model(name: str, model: ModelSpec) -> Model:
    """The model a worker uses for `name`, with provider SDK retries off and `model.baseUrl` applied."""
    try:
        return _infer(name, model)
    except UserError as exc:
        raise AgentLoadError(str(exc)) from None


def without_sdk_retries(settings: Mapping[str, Any] | None) -> ModelSettings:
    """Model settings with the provider SDK's own retries off (unless set explicitly): Temporal retries."""
    return cast(ModelSettings, {"max_retries": 0, **(settings or {})})


def run_time_model_resolver(model: ModelSpec) -> ModelIdResolver[Any]:
    """Resolves a run's model override (`RunInput.model`) the same way as the agent's own model."""

    def resolve(ctx: ModelResolutionContext[Any], model_id: str) -> Model | None:
        if workflow.in_workflow():
            # pydantic-ai resolves the run's model in the workflow too (for its profile; requests still
            # run in the activity, where this resolver builds the model again). Built inside the
            # workflow, a provider SDK is imported into the sandbox, which fails (openai → aiohttp), and
            # a `python:` model's module runs in workflow context, where the durable agents it defines
            # cannot be constructed. Build it on a thread of the worker process, as the activity does.
            with (
                workflow.unsafe.sandbox_unrestricted(),
                workflow.unsafe.imports_passed_through(),
                ThreadPoolExecutor(max_workers=1) as outside,
            ):
                return outside.submit(_infer, model_id, model).result()
        return _infer(model_id, model)

    return resolve


def model_streams(model: object) -> bool:
    """Whether `model` can answer a streamed request (a `FunctionModel` needs a `stream_function`)."""
    from pydantic_ai.models.function import FunctionModel

    return not (isinstance(model, FunctionModel) and model.stream_function is None)

"""The vLLM engine on a real GPU (skipped where there is none, as in CI)."""

from __future__ import annotations

import pytest

from gateway.engine import GenerationRequest


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _has_gpu(), reason="needs an NVIDIA GPU")]


async def test_vllm_engine_generates_on_gpu() -> None:
    from deployments.vllm_engine import VLLMChatEngine

    engine = VLLMChatEngine(
        model="builtin:smollm2-135m-instruct", served_model_name="smollm2", gpu_memory_utilization=0.3
    )
    await engine.start()
    try:
        request = GenerationRequest("gpu-1", [{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0)
        completion = await engine.complete(request)
        assert completion.text.strip() and 1 <= completion.completion_tokens <= 8
    finally:
        await engine.shutdown()
